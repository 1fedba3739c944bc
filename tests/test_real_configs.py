"""The 17 real configs (LVIS v1, OpenImages), each trained 2 iterations on a CPU through ``eqlv2 train``.

A typo or a wrong class count in a config otherwise shows up only on the cluster after hours in the
queue.  Each run uses a generated dataset with the real class count (tests/real_config_helpers.py), 200 px
images, fewer proposals and RoIs, no ImageNet weights (all through cfg-options), and checks what the
config is for: the decoupled stages start from a surgery checkpoint of the CE baseline trained here and
change only their trainable tensors; RFS wraps the data in ClassBalancedDataset with t = 0.001; cRT/LWS
draw with the class-aware sampler; EQLv2's statistics have one entry per class; Seesaw is mmdet's loss with
p = 0.8, q = 2.0 behind a NormedLinear classifier at temperature 20 with C + 2 outputs, and its class counts
saw every sampled RoI.  The LVIS configs keep their epoch-based 1x loop: 4 images at 2 per step make the
one epoch trained here 2 iterations.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmdet.datasets.samplers import ClassAwareSampler
from mmdet.models.layers import NormedLinear
from mmdet.models.losses import SeesawLoss
from mmengine.dataset import ClassBalancedDataset

from eqlv2.checkpoint import load_checkpoint
from eqlv2.config import load_run_config
from eqlv2.engine import training
from eqlv2.engine.schedule import rescale_schedule
from eqlv2.tools.surgery import surgery

from .real_config_helpers import LVIS_NUM_CLASSES, OI_NUM_CLASSES, make_lvis_v1, make_openimages

pytestmark = pytest.mark.slow

LVIS = "lvis_v1/mask-rcnn_r50_fpn_{}_ms-1x_lvis-v1.py"
OI = "openimages/faster-rcnn_{}_180k_oi-challenge2019.py"
LVIS_CONFIGS = ["ce", "rfs", "eql-loss", "eqlv2-loss", "eqlv2-loss_rfs", "crt", "lws", "bags", "fed-loss",
                "seesaw-loss", "seesaw-loss_rfs", "ecm-loss"]  # fmt: skip
OI_CONFIGS = [f"{d}_fpn_{m}" for d in ("r50", "r101") for m in ("ce", "eql-loss", "eqlv2-loss")]
ITERATION_BASED = {"crt", "lws"}  # LVIS: the decoupled 75k-iteration schedule; OpenImages: all
DECOUPLED = {"crt": "remove", "bags": "remove", "lws": "reset"}  # surgery method of each
TRAINABLE = {"crt": ("roi_head.bbox_head.fc_cls.",), "bags": ("roi_head.bbox_head.fc_cls.",),
             "lws": ("roi_head.bbox_head.fc_cls.scales",)}  # fmt: skip
SMALL = {  # the CPU-sized run: model, batch and loader
    "model.backbone.init_cfg": None,
    "model.train_cfg.rpn_proposal.nms_pre": 200,
    "model.train_cfg.rpn_proposal.max_per_img": 100,
    "model.train_cfg.rcnn.sampler.num": 64,
    "train_dataloader.batch_size": 2,
    "train_dataloader.num_workers": 0,
    "train_dataloader.persistent_workers": False,
}


def lvis_options(method: str) -> dict:
    inner = "train_dataloader.dataset.dataset" if "rfs" in method else "train_dataloader.dataset"
    options = dict(SMALL)
    options[f"{inner}.pipeline.2.scales"] = [(200, 128), (200, 144)]
    options["test_dataloader.dataset.pipeline.1.scale"] = (200, 144)
    if method not in ITERATION_BASED:
        options["train_cfg.max_epochs"] = 1
    if method in DECOUPLED:  # a checkpoint after each iteration, to see the trainable tensors move
        options["default_hooks.checkpoint.by_epoch"] = False
        options["default_hooks.checkpoint.interval"] = 1
    return options


def oi_options() -> dict:
    options = dict(SMALL)
    options["train_dataloader.dataset.pipeline.2.scale"] = (200, 150)
    options["test_dataloader.dataset.pipeline.1.scale"] = (200, 150)
    return options


@pytest.fixture(scope="module")
def lvis_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lvis_v1")
    make_lvis_v1(root)
    return root


@pytest.fixture(scope="module")
def oi_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("openimages")
    make_openimages(root)
    return root


class Run:
    """One ``eqlv2 train`` call and what it left: the runner (in-process runs), the work dir, the model."""

    def __init__(self, work_dir: Path, out: Path, runner=None) -> None:
        self.work_dir, self.out, self.runner = work_dir, out, runner

    def state(self, name: str | None = None) -> dict[str, torch.Tensor]:
        return load_checkpoint(self.work_dir / name if name else self.out)["state_dict"]

    def scalars(self) -> list[dict]:
        (path,) = self.work_dir.glob("*/vis_data/scalars.json")
        return [json.loads(line) for line in path.read_text().splitlines()]


def train_in_process(monkeypatch, config, root, work_dir, options, **kwargs) -> Run:
    """``eqlv2 train``'s library call, keeping the Runner it builds to inspect its dataloader."""
    built = []
    original = training.build_runner

    def recording(cfg):
        built.append(original(cfg))
        return built[-1]

    monkeypatch.setattr(training, "build_runner", recording)
    out = work_dir / "model_final.pth"
    training.train(config, work_dir, out, data_root=root, cfg_options=options, **kwargs)
    return Run(work_dir, out, built[0])


def train_subprocess(config, root, work_dir, options, max_iters=None) -> Run:
    """The ``eqlv2 train`` verb itself, in a fresh process."""
    out = work_dir / "model_final.pth"
    args = [sys.executable, "-m", "eqlv2", "train", config, "--work-dir", str(work_dir), "--out", str(out),
            "--data-root", str(root), "--cfg-options"]  # fmt: skip
    args += [f"{k}={v!r}".replace("'", "") if isinstance(v, str) else f"{k}={v}".replace(" ", "")
             for k, v in options.items()]  # fmt: skip
    if max_iters is not None:
        args += ["--max-iters", str(max_iters)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return Run(work_dir, out)


def assert_two_finite_iterations(run: Run) -> None:
    meta = load_checkpoint(run.out)["meta"]
    assert meta["iter"] == 2
    losses = [row["loss"] for row in run.scalars() if "loss" in row]
    assert losses and all(math.isfinite(v) for v in losses)
    assert run.scalars()[-1]["iter"] == 2


def assert_seesaw_head(run: Run, final: dict[str, torch.Tensor]) -> None:
    """mmdet's Seesaw as its LVIS configs use it: what a wrong key in the config would silently change."""
    model = run.runner.model
    bbox_head = getattr(model, "module", model).roi_head.bbox_head
    loss = bbox_head.loss_cls
    assert type(loss) is SeesawLoss
    assert (loss.p, loss.q, loss.num_classes, loss.loss_weight) == (0.8, 2.0, LVIS_NUM_CLASSES, 1.0)
    assert type(bbox_head.fc_cls) is NormedLinear and bbox_head.fc_cls.tempearture == 20
    head = "roi_head.bbox_head."
    assert final[f"{head}fc_cls.weight"].shape == (LVIS_NUM_CLASSES + 2, 1024)  # classes, then objectness
    # cum_samples counts the labels of every RoI the loss saw, background last: 2 iterations x 2 images x
    # the 64 RoIs that SMALL's sampler draws per image.
    counts = final[f"{head}loss_cls.cum_samples"]
    assert counts.shape == (LVIS_NUM_CLASSES + 1,)
    rois_per_iteration = SMALL["train_dataloader.batch_size"] * SMALL["model.train_cfg.rcnn.sampler.num"]
    assert counts.sum() == 2 * rois_per_iteration
    assert counts[:-1].sum() > 0 and counts[-1] > 0  # foreground and background RoIs both
    rows = [row for row in run.scalars() if "loss" in row]
    assert rows and all(
        math.isfinite(row["loss_cls_objectness"]) and math.isfinite(row["loss_cls_classes"]) for row in rows
    )


@pytest.fixture(scope="module")
def ce_baseline(lvis_root, tmp_path_factory) -> Run:
    """The LVIS CE baseline, trained once: its own test and the decoupled stages' starting point."""
    with pytest.MonkeyPatch.context() as mp:
        return train_in_process(mp, LVIS.format("ce"), lvis_root, tmp_path_factory.mktemp("ce"),
                                lvis_options("ce"))  # fmt: skip


def trainable(key: str, method: str) -> bool:
    return key.startswith(TRAINABLE[method])


LVIS_PARAMS = [pytest.param(m, id=LVIS.format(m)) for m in LVIS_CONFIGS]


@pytest.mark.parametrize("method", LVIS_PARAMS)
def test_lvis_v1_config(method, lvis_root, ce_baseline, tmp_path, monkeypatch):
    config = LVIS.format(method)
    if method == "ce":
        run = ce_baseline
    else:
        kwargs = {"max_iters": 2} if method in ITERATION_BASED else {}
        if method in DECOUPLED:
            kwargs["load_from"] = surgery(ce_baseline.out, DECOUPLED[method], tmp_path / "surgery")
        run = train_in_process(monkeypatch, config, lvis_root, tmp_path / "work", lvis_options(method),
                               **kwargs)  # fmt: skip
    assert_two_finite_iterations(run)
    loader = run.runner.train_dataloader
    if "rfs" in method:
        assert isinstance(loader.dataset, ClassBalancedDataset)
        assert loader.dataset.oversample_thr == 0.001
    else:
        assert not isinstance(loader.dataset, ClassBalancedDataset)
    assert isinstance(loader.sampler, ClassAwareSampler) == (method in {"crt", "lws"})
    final = run.state()
    head = "roi_head.bbox_head."
    if method.startswith("eqlv2"):
        for buffer in ("pos_grad", "neg_grad", "pos_neg"):
            assert final[f"{head}loss_cls.{buffer}"].shape == (LVIS_NUM_CLASSES,)
        assert final[f"{head}loss_cls.pos_grad"].sum() > 0  # the 2 iterations accumulated statistics
    if method in ("eql-loss", "fed-loss"):
        assert final[f"{head}fc_cls.weight"].shape[0] == LVIS_NUM_CLASSES  # sigmoid: no background
    if method == "ecm-loss":
        assert final[f"{head}fc_cls.weight"].shape[0] == LVIS_NUM_CLASSES + 1  # classes and background
        assert not [k for k in final if "loss_cls" in k]  # margins and weights come from ann_file
    if method.startswith("seesaw"):
        assert_seesaw_head(run, final)
    if method in DECOUPLED:
        start = load_checkpoint(kwargs["load_from"])["state_dict"]
        first, second = run.state("iter_1.pth"), run.state("iter_2.pth")
        moved = [k for k in final if trainable(k, method)]
        assert moved, f"no state_dict key of {config} is trainable"
        for key, value in final.items():
            if trainable(key, method):
                assert not torch.equal(first[key], second[key]), f"{key} did not train"
            elif key in start:
                assert torch.equal(value, start[key]), f"frozen {key} changed"
            else:
                assert torch.equal(first[key], value), f"{key} (not in the surgery checkpoint) changed"
        if method == "lws":  # the baseline classifier itself is kept and frozen
            assert torch.equal(final[f"{head}fc_cls.weight"], ce_baseline.state()[f"{head}fc_cls.weight"])


@pytest.mark.parametrize("name", OI_CONFIGS, ids=[OI.format(n) for n in OI_CONFIGS])
def test_openimages_config(name, oi_root, tmp_path, monkeypatch):
    config = OI.format(name)
    if name.startswith("r101"):  # the verb itself, in its own process
        run = train_subprocess(config, oi_root, tmp_path / "work", oi_options(), max_iters=2)
    else:
        run = train_in_process(monkeypatch, config, oi_root, tmp_path / "work", oi_options(), max_iters=2)
        assert not isinstance(run.runner.train_dataloader.sampler, ClassAwareSampler)
    assert_two_finite_iterations(run)
    final = run.state()
    head = "roi_head.bbox_head."
    channels = OI_NUM_CLASSES + (0 if "eql-loss" in name else 1)  # EQL: C sigmoids; CE, EQLv2: C + 1
    assert final[f"{head}fc_cls.weight"].shape[0] == channels
    if "eqlv2" in name:
        for buffer in ("pos_grad", "neg_grad", "pos_neg"):
            assert final[f"{head}loss_cls.{buffer}"].shape == (OI_NUM_CLASSES,)
    if name.startswith("r101"):
        assert "backbone.layer3.22.conv1.weight" in final  # ResNet-101: 23 blocks in stage 3


SCHEDULED = [LVIS.format("crt"), LVIS.format("lws")] + [OI.format(n) for n in OI_CONFIGS]


@pytest.mark.parametrize("config", SCHEDULED)
@pytest.mark.parametrize("max_iters", [2, 100, 1000])
def test_rescale_schedule_keeps_the_real_schedule_in_proportion(config, max_iters, lvis_root, oi_root):
    root = lvis_root if config.startswith("lvis") else oi_root
    cfg = load_run_config(config, root)
    old = cfg.train_cfg.max_iters
    warmup, steps = cfg.param_scheduler
    old_end, old_milestones = warmup["end"], list(steps["milestones"])
    rescale_schedule(cfg, max_iters)
    factor = max_iters / old
    warmup, steps = cfg.param_scheduler
    assert cfg.train_cfg.max_iters == max_iters and steps["end"] == max_iters
    assert warmup["end"] == min(max(2, round(old_end * factor)), max_iters)  # a warm-up that ends
    assert steps["milestones"] == [max(1, round(m * factor)) for m in old_milestones]
    assert (
        1 <= warmup["end"] <= max_iters
        and 1 <= steps["milestones"][0] <= steps["milestones"][-1] <= max_iters
    )
    assert steps["milestones"] == sorted(steps["milestones"])
    if max_iters >= 1000:  # enough resolution: the steps are strictly ordered and below the end
        assert warmup["end"] < steps["milestones"][0] < steps["milestones"][1] < max_iters


@pytest.mark.parametrize("config", [LVIS.format("lws"), OI.format("r50_fpn_eqlv2-loss")])
def test_a_rescaled_warm_up_reaches_the_base_learning_rate(config, lvis_root, oi_root):
    """mmengine's schedulers stepped through the rescaled schedule: after the warm-up the lr is the
    config's (a warm-up rescaled to one iteration would stay at 0.001 x lr for the whole run)."""
    from mmengine.optim.scheduler import LinearLR, MultiStepLR

    cfg = load_run_config(config, lvis_root if config.startswith("lvis") else oi_root)
    rescale_schedule(cfg, 4)
    warmup, steps = (dict(s) for s in cfg.param_scheduler)
    base_lr = cfg.optim_wrapper.optimizer.lr
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base_lr)
    schedulers = [LinearLR(optimizer, **{k: v for k, v in warmup.items() if k != "type"}),
                  MultiStepLR(optimizer, **{k: v for k, v in steps.items() if k != "type"})]  # fmt: skip
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        for scheduler in schedulers:
            scheduler.step()
    assert lrs[0] == pytest.approx(base_lr * warmup["start_factor"])
    assert lrs[warmup["end"]] == pytest.approx(base_lr * steps["gamma"] ** sum(
        m <= warmup["end"] for m in steps["milestones"]))  # fmt: skip


def test_max_iters_on_an_epoch_based_config_is_one_line(lvis_root):
    cfg = load_run_config(LVIS.format("eqlv2-loss"), lvis_root)
    with pytest.raises(ValueError) as err:
        rescale_schedule(cfg, 100)
    assert str(err.value) == (
        "--max-iters needs an iteration-based schedule, but train_cfg is 'EpochBasedTrainLoop' with "
        "max_epochs=12; shorten it with --cfg-options train_cfg.max_epochs=N"
    )
