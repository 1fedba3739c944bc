"""Fewer GPUs keep the global batch: `eqlv2 train` divides a config's global batch over the processes.

A config states its global batch, the images of one optimizer step, as ``auto_scale_lr.base_batch_size``
(16 = 8 GPUs x 2 for LVIS v1 and OpenImages, as the original; 4 for the toy), and each of N processes
trains global / N images, so ``resources.train.gpus: 4`` trains 4 x 4 with the paper's lr and schedule.

Why a 2-process run and a 1-process run of the same global batch G see the same images at every
iteration: mmengine's ``InfiniteSampler`` with a seed gives rank r the items r, r + W, r + 2W, ... of one
shuffled stream, and the toy's images are all square (one aspect-ratio group of mmdet's batch sampler), so
with G / W images per rank, iteration k takes items kG .. (k + 1)G - 1 of the stream on the W ranks
together: the images the one process takes.  (With images of both orientations, the aspect-ratio grouping
works per rank and the split of the stream into batches can differ; the global batch is G either way.)

What must then match, from the same initial weights, is EQLv2's statistics after the first iteration: the
sums over the whole global batch, which each rank holds after the all-reduce.  That needs the per-image
computation not to depend on the batch: the comparison freezes the backbone's batch norm (the toy trains
it, and batch statistics over 2 images are not those over 4), keeps every proposal in the RoI sampler
(which would otherwise draw different RoIs on each rank) and turns off the random flip.  Later iterations
are not compared: each rank normalises its losses by its own number of RoIs and DDP averages the ranks'
gradients, and the RPN draws its anchors per rank, so the weights after the first step differ in the last
digits from a 1-process step (as in mmdet and in the original; trained weights cannot be identical).
"""

from __future__ import annotations

import copy
import subprocess

import pytest
import torch
from mmengine.config import Config

from eqlv2.config import resolve_config
from eqlv2.engine.batch import launch_world_size, sets_per_process_batch, split_global_batch
from eqlv2.engine.run import run_fingerprint

from .conftest import REPO
from .launch_helpers import eqlv2_command, eqlv2_env, run_eqlv2, save_initial_weights

CONFIG_DIR = REPO / "src/eqlv2/configs"
CONFIGS = sorted(p.relative_to(CONFIG_DIR) for p in CONFIG_DIR.glob("*/*.py") if p.parent.name != "_base_")
EQLV2_TOY = "toy/mask-rcnn_r18_fpn_eqlv2-loss_toy.py"


def _load(name) -> Config:
    return Config.fromfile(str(resolve_config(name)))


@pytest.mark.parametrize("name", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_every_config_states_its_global_batch_and_it_is_divided_over_the_processes(name):
    expected = 4 if name.parts[0] == "toy" else 16  # the original: 8 GPUs x 2 images
    loaded = _load(name)
    assert loaded.auto_scale_lr.base_batch_size == expected
    for world_size in (1, 2, 4):
        cfg = copy.deepcopy(loaded)
        split = split_global_batch(cfg, world_size)
        assert cfg.train_dataloader.batch_size == split.per_process == expected // world_size
        assert split.global_batch == split.per_process * world_size == expected


def test_four_gpus_train_four_images_each_with_the_papers_schedule():
    cfg = _load("lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss_ms-1x_lvis-v1.py")
    before = copy.deepcopy(cfg)
    split = split_global_batch(cfg, world_size=4)
    assert str(split) == "global batch 16 images = 4 processes x 4"
    assert cfg.train_dataloader.batch_size == 4
    # Nothing else moves: the lr is the one for 16 images, which is what the run trains with.
    for key in ("optim_wrapper", "param_scheduler", "train_cfg", "auto_scale_lr"):
        assert cfg[key] == before[key], key


def test_a_global_batch_that_does_not_divide_is_refused_naming_the_choices():
    cfg = _load("lvis_v1/mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py")
    with pytest.raises(ValueError) as err:
        split_global_batch(cfg, world_size=3, source="lvis_v1/mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py")
    assert str(err.value) == (
        "lvis_v1/mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py: the global batch of 16 images "
        "(auto_scale_lr.base_batch_size) does not divide over 3 processes; "
        "use 1, 2, 4, 8, 16 GPUs (or processes)"
    )


def test_a_config_without_a_global_batch_is_refused():
    cfg = Config(dict(train_dataloader=dict(batch_size=2)))
    with pytest.raises(ValueError, match=r"my.py: auto_scale_lr.base_batch_size must give the global batch"):
        split_global_batch(cfg, world_size=1, source="my.py")


def test_a_per_process_batch_given_on_the_command_line_is_kept():
    """`--cfg-options train_dataloader.batch_size=N` keeps mmengine's meaning (N per process), so a command
    line written before the global batch existed still trains what it says."""
    options = {"train_dataloader.batch_size": 1}
    assert sets_per_process_batch(options)
    assert sets_per_process_batch({"train_dataloader": {"batch_size": 1}})
    assert not sets_per_process_batch({"train_dataloader.num_workers": 0})
    assert not sets_per_process_batch(None)
    cfg = _load(EQLV2_TOY)
    cfg.merge_from_dict(options)
    split = split_global_batch(cfg, world_size=2, per_process_given=True)
    assert (split.global_batch, split.per_process, cfg.train_dataloader.batch_size) == (2, 1, 1)


def test_the_world_size_is_known_before_the_process_group_exists():
    assert launch_world_size("pytorch", {"WORLD_SIZE": "4"}) == 4  # torchrun
    assert launch_world_size("slurm", {"SLURM_NTASKS": "8"}) == 8
    assert launch_world_size("none", {"WORLD_SIZE": "4"}) == 1  # a plain launch is one process


def test_a_run_is_the_same_run_on_another_number_of_gpus_but_not_with_another_global_batch():
    """The work dir's fingerprint holds the global batch, not its split: a job requeued on fewer GPUs
    resumes its checkpoints, a changed global batch starts afresh."""
    fingerprints, loaded = {}, _load(EQLV2_TOY)
    for world_size in (1, 2, 4):
        cfg = copy.deepcopy(loaded)
        split = split_global_batch(cfg, world_size)
        fingerprints[world_size] = run_fingerprint(cfg, None, split.global_batch)
    assert len(set(fingerprints.values())) == 1
    assert cfg.train_dataloader.batch_size == 1  # the fingerprint left the config as it was
    other = copy.deepcopy(loaded)
    other.merge_from_dict({"auto_scale_lr.base_batch_size": 8})
    assert run_fingerprint(other, None, split_global_batch(other, 4).global_batch) != fingerprints[4]


def test_eqlv2_train_refuses_a_world_size_that_does_not_divide_the_global_batch(small_toy, tmp_path):
    """torchrun with 3 processes on the toy's 4 images: one line, before any process group or file."""
    command = eqlv2_command(
        1, "train", EQLV2_TOY, "--data-root", str(small_toy), "--work-dir", str(tmp_path / "work"),
        "--out", str(tmp_path / "model.pth"), "--launcher", "pytorch",
    )  # fmt: skip
    env = eqlv2_env(WORLD_SIZE="3", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29599")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"eqlv2 train: error: {EQLV2_TOY}: the global batch of 4 images (auto_scale_lr.base_batch_size) "
        "does not divide over 3 processes; use 1, 2, 4 GPUs (or processes)"
    )
    assert not (tmp_path / "work").exists() and not (tmp_path / "model.pth").exists()


# The comparison run: the toy EQLv2 config with nothing in it that depends on how images are batched.
COMPARISON_CONFIG = """\
_base_ = '{base}'
custom_imports = dict(imports=['eqlv2.plugin', 'tests.batch_recorder'], allow_failed_imports=False)
model = dict(
    backbone=dict(norm_eval=True),  # batch norm with its running statistics, not the batch's
    train_cfg=dict(rcnn=dict(sampler=dict(num=2048))))  # every proposal is a sampled RoI
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(pipeline=train_pipeline))
custom_hooks = [dict(type='NonFiniteLossHook'), dict(type='BatchRecorderHook')]
randomness = dict(seed=0)  # the sampler's seed: the same shuffled stream in both runs
"""
ITERATIONS = 3


@pytest.mark.slow
def test_two_processes_train_the_global_batch_of_one_with_the_same_eqlv2_statistics(small_toy, tmp_path):
    config = tmp_path / "comparison.py"
    config.write_text(COMPARISON_CONFIG.format(base=resolve_config(EQLV2_TOY).resolve()))
    init = save_initial_weights(EQLV2_TOY, small_toy, tmp_path / "init.pth")
    logs, records = {}, {}
    for nproc in (1, 2):
        work_dir = tmp_path / f"{nproc}proc"
        result = run_eqlv2(
            nproc, "train", str(config), "--data-root", str(small_toy), "--work-dir", str(work_dir),
            "--out", str(tmp_path / f"{nproc}proc.pth"), "--max-iters", str(ITERATIONS),
            "--load-from", str(init),
        )  # fmt: skip
        logs[nproc] = result.stdout + result.stderr
        records[nproc] = [torch.load(work_dir / f"batches_rank{r}.pt") for r in range(nproc)]
    assert "eqlv2: global batch 4 images = 1 process x 4" in logs[1]
    assert "eqlv2: global batch 4 images = 2 processes x 2" in logs[2]

    (one,) = records[1]
    rank0, rank1 = records[2]
    assert len(one) == len(rank0) == len(rank1) == ITERATIONS
    for it in range(ITERATIONS):
        # The per-process batch halves and the two ranks together train the one process's images.
        assert len(one[it]["img_ids"]) == 4 and len(rank0[it]["img_ids"]) == len(rank1[it]["img_ids"]) == 2
        assert sorted(rank0[it]["img_ids"] + rank1[it]["img_ids"]) == sorted(one[it]["img_ids"]), it
        # Every rank holds the statistics of the whole global batch.
        for stat in ("pos_grad", "neg_grad"):
            assert torch.equal(rank0[it][stat], rank1[it][stat]), (it, stat)
    assert len({i for record in one for i in record["img_ids"]}) == 4 * ITERATIONS  # no image twice here

    # After the first iteration, from the same weights: the sums over the same 4 images' RoIs (the
    # summation order differs, hence a float32 tolerance).
    for stat in ("pos_grad", "neg_grad"):
        assert one[0][stat].sum() > 0
        torch.testing.assert_close(rank0[0][stat], one[0][stat], rtol=1e-5, atol=1e-5)


def test_the_comparison_config_changes_only_what_depends_on_the_batch(tmp_path):
    """The comparison trains the toy EQLv2 model itself: same model, data and schedule; only the batch
    norm mode, the RoI sampler's size, the flip and data loading in the main process differ."""
    config = tmp_path / "comparison.py"
    config.write_text(COMPARISON_CONFIG.format(base=resolve_config(EQLV2_TOY).resolve()))
    base, ours = _load(EQLV2_TOY), Config.fromfile(str(config))
    assert ours.model.backbone.norm_eval and not base.model.backbone.norm_eval
    base.model.backbone.norm_eval = True
    base.model.train_cfg.rcnn.sampler.num = 2048
    assert ours.model.to_dict() == base.model.to_dict()
    assert [t["type"] for t in base.train_dataloader.dataset.pipeline if t["type"] != "RandomFlip"] == [
        t["type"] for t in ours.train_dataloader.dataset.pipeline
    ]
    assert ours.train_dataloader.sampler == base.train_dataloader.sampler
    assert (ours.optim_wrapper, ours.param_scheduler, ours.train_cfg) == (
        base.optim_wrapper, base.param_scheduler, base.train_cfg,
    )  # fmt: skip
    assert ours.auto_scale_lr.base_batch_size == 4
