"""A training job killed after its first checkpoint resumes from it when the rule reruns."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import psutil
import pytest

from eqlv2.checkpoint import load_checkpoint

from .workflow_helpers import SMALL_CONFIG, env, run_snakemake, snakemake_command, write_config

MAX_ITERS = 40


def _training_process(root: psutil.Process) -> psutil.Process | None:
    for child in root.children(recursive=True):
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if any(part.endswith("eqlv2") for part in cmdline[:2]) and "train" in cmdline:
            return child
    return None


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path, sig):
    """SIGTERM is what SLURM sends a preempted job; SIGKILL leaves no chance to clean up.  Either way the
    rerun continues from the last checkpoint, with EQLv2's gradient statistics restored from it."""
    options = ["default_hooks.checkpoint.interval=10", "default_hooks.logger.interval=5"]
    train = {"max_iters": MAX_ITERS, "cfg_options": options}
    configfile = write_config(tmp_path, train=train, methods={"eqlv2": SMALL_CONFIG["methods"]["eqlv2"]})
    target = "results/toy/eqlv2/model_final.pth"
    work_dir = tmp_path / "results/toy/eqlv2/train"

    snakemake = subprocess.Popen(
        snakemake_command(tmp_path, configfile, "--cores", "2", target), env=env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not (work_dir / "last_checkpoint").exists():  # written once iter_10.pth is complete
            assert snakemake.poll() is None, "the workflow ended before the first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.1)
        trainer = _training_process(psutil.Process(snakemake.pid))
        assert trainer is not None
        trainer.send_signal(sig)
        assert snakemake.wait(timeout=120) != 0
    finally:
        if snakemake.poll() is None:
            snakemake.kill()
    checkpoint = (work_dir / "last_checkpoint").read_text().strip()
    killed_at = int(re.search(r"iter_(\d+)\.pth$", checkpoint).group(1))
    assert killed_at < MAX_ITERS
    assert not (tmp_path / target).exists()  # no output that a rerun could take as finished

    saved = load_checkpoint(checkpoint)["state_dict"]
    pos_grad = float(saved["roi_head.bbox_head.loss_cls.pos_grad"].double().sum())
    neg_grad = float(saved["roi_head.bbox_head.loss_cls.neg_grad"].double().sum())
    assert pos_grad > 0

    run_snakemake(tmp_path, configfile, "--cores", "2", target)
    log = (tmp_path / "logs/toy/eqlv2/train.log").read_text()
    assert f"eqlv2: resuming from {checkpoint}" in log
    assert (
        f"roi_head.bbox_head.loss_cls starts at iteration {killed_at} with "
        f"pos_grad={pos_grad:.6g}, neg_grad={neg_grad:.6g}"
    ) in log
    logged = [int(i) for i in re.findall(rf"Iter\(train\) \[\s*(\d+)/{MAX_ITERS}\]", log)]
    assert logged[0] > killed_at and logged[-1] == MAX_ITERS
    final = load_checkpoint(tmp_path / target)
    assert final["meta"]["iter"] == MAX_ITERS
    # Cumulative statistics: the final ones include everything accumulated before the kill.
    assert (
        final["state_dict"]["roi_head.bbox_head.loss_cls.pos_grad"]
        >= saved["roi_head.bbox_head.loss_cls.pos_grad"]
    ).all()


@pytest.mark.slow
def test_checkpoints_of_another_configuration_are_never_resumed(tmp_path):
    """A changed schedule reruns training from scratch; the old checkpoints are moved aside, not resumed."""
    options = ["default_hooks.checkpoint.interval=10", "default_hooks.logger.interval=5"]
    target = "results/toy/baseline/model_final.pth"
    first = write_config(tmp_path, train={"max_iters": 20, "cfg_options": options})
    run_snakemake(tmp_path, first, "--cores", "2", target)

    second = write_config(tmp_path, train={"max_iters": 30, "cfg_options": options})
    run_snakemake(tmp_path, second, "--cores", "2", "--forcerun", "train", "--", target)
    log = (tmp_path / "logs/toy/baseline/train.log").read_text()
    assert "held another run's checkpoints; moved them to" in log
    assert "resuming from" not in log
    logged = [int(i) for i in re.findall(r"Iter\(train\) \[\s*(\d+)/30\]", log)]
    assert logged[0] == 5 and logged[-1] == 30
    stale = list((tmp_path / "results/toy/baseline").glob("train.stale-*"))
    assert len(stale) == 1 and (stale[0] / "iter_20.pth").is_file()
    assert load_checkpoint(tmp_path / target)["meta"]["iter"] == 30
