"""Training is seeded: the same seed trains the same model, another seed another one."""

from __future__ import annotations

import os

import torch
from mmengine.config import Config

from eqlv2.checkpoint import load_checkpoint
from eqlv2.engine.run import run_fingerprint
from eqlv2.engine.training import CUBLAS_WORKSPACE_CONFIG, seed_run, train

CONFIG = "toy/mask-rcnn_r18_fpn_ce_toy.py"


def test_the_seed_goes_to_mmengines_randomness_and_into_the_runs_identity():
    cfg = Config(dict(randomness=dict(diff_rank_seed=False), train_dataloader=dict(batch_size=2)))
    seed_run(cfg, 3)
    assert cfg.randomness == dict(diff_rank_seed=False, seed=3, deterministic=False)
    other = Config(dict(train_dataloader=dict(batch_size=2)))
    seed_run(other, 4, deterministic=True)
    assert other.randomness == dict(seed=4, deterministic=True)
    # Another seed is another run: its work dir's checkpoints are never resumed by this one.
    assert run_fingerprint(cfg, None, 4) != run_fingerprint(Config({**cfg.to_dict(), "randomness": dict(
        diff_rank_seed=False, seed=4, deterministic=False)}), None, 4)  # fmt: skip


def _trained(small_toy, tmp_path, name: str, seed: int) -> dict[str, torch.Tensor]:
    out = train(CONFIG, tmp_path / name, tmp_path / f"{name}.pth", data_root=small_toy, max_iters=3,
                cfg_options={"default_hooks.checkpoint.interval": 3}, seed=seed)  # fmt: skip
    return load_checkpoint(out)["state_dict"]


def test_the_same_seed_trains_the_same_model_and_another_seed_another(small_toy, tmp_path):
    """Three iterations of the toy baseline on a CPU: initial weights, the sampler's shuffling, the RPN's
    and the RoI sampler's draws all follow the seed."""
    first, again, other = (_trained(small_toy, tmp_path, name, seed)
                           for name, seed in (("first", 7), ("again", 7), ("other", 8)))  # fmt: skip
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    moved = [k for k in first if first[k].is_floating_point() and not torch.equal(first[k], other[k])]
    assert "roi_head.bbox_head.fc_cls.weight" in moved


def test_deterministic_mode_fixes_cublas_workspace_before_cuda_starts(monkeypatch):
    """torch's deterministic mode refuses cuBLAS matmuls on a GPU unless CUBLAS_WORKSPACE_CONFIG was set
    before CUDA started; a value the environment chose is kept, and a non-deterministic run sets none."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seed_run(Config(dict()), 0)
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    seed_run(Config(dict()), 0, deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE_CONFIG == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    seed_run(Config(dict()), 0, deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_a_deterministic_run_warns_on_an_operator_without_a_deterministic_kernel(
    small_toy, tmp_path, monkeypatch
):
    """`eqlv2 train --deterministic`: mmengine's deterministic mode, with operators that have no
    deterministic kernel warning instead of stopping the run (CUDA's ``interpolate`` backward stands for
    them here: on a CPU it has one, so the flags themselves are checked)."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        train(CONFIG, tmp_path / "work", tmp_path / "model.pth", data_root=small_toy, max_iters=1,
              cfg_options={"default_hooks.checkpoint.interval": 1}, seed=0, deterministic=True)  # fmt: skip
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        log = next((tmp_path / "work").glob("*/*.log")).read_text()
        assert "eqlv2: deterministic kernels where torch has them (CUBLAS_WORKSPACE_CONFIG=:4096:8)" in log
    finally:  # process-wide settings: leave them as other tests expect
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
