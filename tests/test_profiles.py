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


def _shell_commands(plan: str, rule: str) -> list[str]:
    """The shell command of every job of ``rule`` in a plan printed with -p."""
    return re.findall(rf"\nrule {rule}:\n(?:    .*\n)*?Shell command: ([^\n]*)", plan)


def test_profile_slurm_plans_the_paper_reproduction_on_slurm():
    plan = _plan("--profile", "slurm")
    assert "config/lvis_v1.yaml" in plan
    # The paper's eight rows and four beyond it (Seesaw, Seesaw + RFS, Federated Loss, ECM): twelve training
    # jobs of 8 GPUs each (the original's 8x2 setting), submitted to SLURM ...
    trains = re.findall(r"\nrule train:\n(?:    .*\n)*?    resources: ([^\n]*)", plan)
    assert len(trains) == 12
    for method in ("seesaw", "seesaw_rfs", "fed_loss", "ecm"):
        assert f"results/lvis_v1/{method}/model_final.pth" in plan
    assert all("gpu=8" in r and "runtime=2880" in r for r in trains)
    # ... after the sha256-checked downloads of the data and the backbone weights.
    assert plan.count("rule download:") == 5
    for name in ("lvis_v1_train.json.zip", "lvis_v1_val.json.zip", "train2017.zip", "val2017.zip",
                 "resnet50-0676ba61.pth"):  # fmt: skip
        assert f"resources/downloads/{name}" in plan
    # The embedded default's rows stay out of it (a named config replaces the default, not extends it).
    assert "rule make_toy:" not in plan and "openimages" not in plan


def test_openimages_config_plans_the_original_openimages_table():
    plan = _plan("--profile", "slurm", "--configfile", "config/openimages.yaml", "-p")
    trains = re.findall(
        r"\nrule train_openimages:\n(?:    .*\n)*?    wildcards: ([^\n]*)\n    resources: ([^\n]*)", plan
    )
    assert sorted(w.split("oi_method=")[1] for w, _ in trains) == sorted(
        f"{backbone}_{loss}" for backbone in ("r50", "r101") for loss in ("ce", "eql", "eqlv2")
    )
    assert all("gpu=8" in r for _, r in trains)
    # The six Challenge files and both backbones are downloaded (sha256-checked); the images are linked.
    assert plan.count("rule download:") == 8
    for name in ("challenge-2019-train-detection-bbox.csv", "challenge-2019-label500-hierarchy.json",
                 "resnet50-0676ba61.pth", "resnet101-63fe2227.pth"):  # fmt: skip
        assert f"resources/downloads/{name}" in plan
    assert plan.count("rule openimages_images:") == 2
    assert "results/openimages/openimages_table.md" in plan and "paper_table" not in plan
    for rule in ("train_openimages", "predict_openimages"):  # GPU jobs check the install first
        commands = _shell_commands(plan, rule)
        assert len(commands) == 6 and all(c.startswith("{ eqlv2 doctor --require-gpu && ") for c in commands)


def test_training_with_several_processes_runs_under_torchrun():
    plan = _plan("--profile", "slurm", "-p")
    assert "torchrun --standalone --nproc-per-node=8 -m eqlv2 train" in plan
    assert "--launcher pytorch" in plan
    # Each GPU job first runs `eqlv2 doctor`, so an mmcv without CUDA operators for the node's cards fails
    # the job in seconds, with the doctor's one line in the job's log, before torchrun starts.
    for rule, verb in (("train", "train"), ("predict", "test")):
        commands = _shell_commands(plan, rule)
        assert len(commands) == 12  # the paper's eight rows and four beyond it
        prefix = f"{{ eqlv2 doctor --require-gpu && torchrun --standalone --nproc-per-node=8 -m eqlv2 {verb} "
        assert all(c.startswith(prefix) and c.endswith(f"/{rule}.log 2>&1") for c in commands), commands


def test_profile_local_runs_the_embedded_default_on_this_machine():
    plan = _plan("--profile", "local", "-p")
    assert "rule make_toy:" in plan and "config/lvis_v1.yaml" not in plan
    assert "gpu=0" in plan  # the embedded default trains on the CPU
    assert "eqlv2 doctor" not in plan  # and has no GPU to check the install against


def test_lvis_v05_config_plans_the_paper_rows_on_v05():
    plan = _plan("--profile", "slurm", "--configfile", "config/lvis_v0.5.yaml", "-p")
    methods = ("baseline", "eql", "rfs", "lws", "crt", "bags", "eqlv2", "eqlv2_rfs")
    trains = _shell_commands(plan, "train")
    assert len(trains) == 8
    for method in methods:
        assert f"results/lvis_v0_5/{method}/model_final.pth" in plan
        config = next(c for c in trains if f"--work-dir results/lvis_v0_5/{method}/train " in c)
        assert " lvis_v0.5/mask-rcnn_r50_fpn_" in config and "_ms-1x_lvis-v0.5.py " in config
        assert "--data-root resources/lvis_v0_5" in config
    # v0.5's annotation archives (hash from the config), COCO 2017's images and the backbone weights ...
    assert plan.count("rule download:") == 5
    for name in ("lvis_v0.5_train.json.zip", "lvis_v0.5_val.json.zip", "train2017.zip", "val2017.zip",
                 "resnet50-0676ba61.pth"):  # fmt: skip
        assert f"resources/downloads/{name}" in plan
    assert "lvis_v1" not in plan
    # ... and every model is scored on v0.5's validation file.
    evaluations = _shell_commands(plan, "evaluate_lvis")
    assert len(evaluations) == 16
    assert all("--ann resources/lvis_v0_5/annotations/lvis_v0.5_val.json " in c for c in evaluations)
    assert "results/lvis_v0_5/paper_table.md" in plan
