"""Two-process CPU training (torchrun + gloo): the workflow's multi-GPU path, without GPUs."""

from __future__ import annotations

import pytest
import torch

from .workflow_helpers import SMALL_CONFIG, run_snakemake, write_config


@pytest.mark.slow
def test_two_process_training_keeps_eqlv2_statistics_identical_on_both_ranks(tmp_path):
    """The training rule launches `torchrun --nproc-per-node=2 -m eqlv2 train --launcher pytorch`; EQLv2
    all-reduces its gradient statistics, so both ranks end with the same pos_grad, neg_grad and pos_neg
    (DDP does not broadcast buffers: they agree only because every rank adds the same global sums)."""
    resources = {**SMALL_CONFIG["resources"], "train": {**SMALL_CONFIG["resources"]["train"], "processes": 2}}
    methods = {"eqlv2": SMALL_CONFIG["methods"]["eqlv2"]}
    configfile = write_config(
        tmp_path, methods=methods, resources=resources, train={"max_iters": 12, "cfg_options": []}
    )
    result = run_snakemake(tmp_path, configfile, "--cores", "2", "-p", "results/toy/eqlv2/model_final.pth")
    assert "torchrun --standalone --nproc-per-node=2 -m eqlv2 train" in result.stdout + result.stderr

    work_dir = tmp_path / "results/toy/eqlv2/train"
    log = (tmp_path / "logs/toy/eqlv2/train.log").read_text()
    assert "Distributed training: True" in log
    ranks = [torch.load(work_dir / f"gradient_stats_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["iter"] == ranks[1]["iter"] == 12
    (name,) = ranks[0]["stats"]
    for stat in ("pos_grad", "neg_grad", "pos_neg"):
        assert torch.equal(ranks[0]["stats"][name][stat], ranks[1]["stats"][name][stat]), stat
    assert ranks[0]["stats"][name]["pos_grad"].sum() > 0  # statistics were really collected
