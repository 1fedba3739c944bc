"""`snakemake --profile slurm all`, typed from the repository root, plans the LVIS v1 reproduction."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from .conftest import REPO
from .workflow_helpers import env


def _plan(*args: str) -> str:
    """The full plan (--forceall: whatever results this checkout already holds)."""
    snakemake = str(Path(sys.executable).parent / "snakemake")
    command = [snakemake, *args, "-n", "--forceall", "all"]
    result = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_profile_slurm_plans_the_paper_reproduction_on_slurm():
    plan = _plan("--profile", "slurm")
    assert "config/lvis_v1.yaml" in plan
    # Eight training jobs of 8 GPUs each (the original's 8x2 setting), submitted to SLURM ...
    trains = re.findall(r"\nrule train:\n(?:    .*\n)*?    resources: ([^\n]*)", plan)
    assert len(trains) == 8
    assert all("gpu=8" in r and "runtime=2880" in r for r in trains)
    # ... after the sha256-checked downloads of the data and the backbone weights.
    assert plan.count("rule download:") == 5
    for name in ("lvis_v1_train.json.zip", "lvis_v1_val.json.zip", "train2017.zip", "val2017.zip",
                 "resnet50-0676ba61.pth"):  # fmt: skip
        assert f"resources/downloads/{name}" in plan


def test_training_with_several_processes_runs_under_torchrun():
    plan = _plan("--profile", "slurm", "-p")
    assert "torchrun --standalone --nproc-per-node=8 -m eqlv2 train" in plan
    assert "--launcher pytorch" in plan


def test_profile_local_runs_the_embedded_default_on_this_machine():
    plan = _plan("--profile", "local")
    assert "rule make_toy:" in plan and "config/lvis_v1.yaml" not in plan
    assert "gpu=0" in plan  # the embedded default trains on the CPU
