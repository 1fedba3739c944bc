"""`snakemake --profile slurm` against a real SLURM (one node on this machine), not a mock."""

from __future__ import annotations

import re
import subprocess

import pytest

from .conftest import REPO
from .slurm_cluster import SlurmCluster
from .workflow_helpers import SMALL_CONFIG, env, snakemake_command, write_config

# Only what a one-node cluster without an accounting database needs on top of the repository's profile.
SINGLE_NODE_OVERRIDES = (
    "--slurm-status-command", "squeue",  # no slurmdbd: sacct cannot see the jobs
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-keep-successful-logs",  # kept so the test can read the SLURM job logs
    "--jobs", "2",
)  # fmt: skip


@pytest.fixture
def slurm(tmp_path_factory):
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


@pytest.mark.slow
def test_profile_slurm_runs_the_workflow_through_sbatch(slurm, tmp_path):
    configfile = write_config(
        tmp_path, methods={"baseline": SMALL_CONFIG["methods"]["baseline"]}, openimages=None
    )
    command = snakemake_command(tmp_path, configfile, "--profile", "slurm", *SINGLE_NODE_OVERRIDES, "all")
    result = subprocess.run(command, cwd=REPO, env={**env(), "SLURM_CONF": slurm.env["SLURM_CONF"]},
                            capture_output=True, text=True, timeout=1800)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]

    job_ids = set(re.findall(r"SLURM jobid (\d+)", output))
    jobs = [
        "make_toy",
        "train",
        "predict",
        "evaluate_lvis",
        "evaluate_lvis",
        "collect_metrics",
        "paper_table",
        "per_class_ap",
    ]
    assert len(job_ids) == len(jobs), output[-5000:]
    slurm_logs = list((tmp_path / "logs/slurm").rglob("*.log"))
    assert {p.stem for p in slurm_logs} == job_ids  # one SLURM log per job, named by its job id
    train_log = next(p for p in slurm_logs if "rule_train" in str(p)).read_text()
    assert "eqlv2 train" in train_log
    assert "Baseline" in (tmp_path / "results/toy/paper_table.md").read_text()
