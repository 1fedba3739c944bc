"""Starting `eqlv2` from tests as one process or as gloo processes under torchrun, and initial weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from .conftest import REPO


def eqlv2_env(**extra: str) -> dict[str, str]:
    """One thread per process (as torchrun sets for each of several), loopback gloo, the tests importable.

    With the same thread count in every run, the CPU kernels reduce in the same order, so a 1-process and
    a 2-process run can be compared to the last bit.
    """
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        **extra,
    }


def eqlv2_command(nproc: int, *args: str) -> list[str]:
    """`python -m eqlv2 ARGS`, or `torchrun --standalone --nproc-per-node=N -m eqlv2 ARGS --launcher pytorch`
    (the workflow's command line for N processes)."""
    if nproc == 1:
        return [sys.executable, "-m", "eqlv2", *args]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    return [torchrun, "--standalone", f"--nproc-per-node={nproc}", "-m", "eqlv2", *args,
            "--launcher", "pytorch"]  # fmt: skip


def run_eqlv2(nproc: int, *args: str, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        eqlv2_command(nproc, *args), capture_output=True, text=True, env=eqlv2_env(**env), timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def save_initial_weights(config: str, data_root: Path, path: Path, seed: int = 0) -> Path:
    """A freshly initialised model of ``config`` as a checkpoint: the same start for every run compared."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    from eqlv2.config import load_run_config

    init_default_scope("mmdet")
    torch.manual_seed(seed)
    model = MODELS.build(load_run_config(config, data_root).model)
    model.init_weights()
    torch.save({"state_dict": model.state_dict()}, path)
    return path
