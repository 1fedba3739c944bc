"""Training one config with mmengine's Runner, resuming from the work dir when it can.

A rerun of the same call after an interruption (preemption, a killed job) continues from the last
checkpoint in the work dir: that is what makes rerunning a Snakemake rule cheap.  Only the same run is
resumed (:mod:`eqlv2.engine.run`).  The config's global batch is divided over the processes
(:mod:`eqlv2.engine.batch`), so fewer GPUs train with the paper's batch; a run resumed on another number
of processes therefore continues with the same global batch.  The finished model is published at ``out``
atomically (a hard link to the last checkpoint where it can be, else a copy), so the presence of ``out``
means training completed.
"""

from __future__ import annotations

import os
from pathlib import Path

from eqlv2.checkpoint import allow_mmengine_checkpoints
from eqlv2.compat import import_lvis
from eqlv2.config import load_run_config
from eqlv2.distributed import prepare_launcher
from eqlv2.engine.batch import BatchSplit, launch_world_size, sets_per_process_batch, split_global_batch
from eqlv2.engine.precision import require_amp_device, use_amp_optim_wrapper
from eqlv2.engine.run import (
    build_runner,
    check_init_checkpoint,
    latest_checkpoint,
    prepare_work_dir,
    run_fingerprint,
    wait_for_work_dir,
    write_checkpoints_atomically,
)
from eqlv2.engine.schedule import rescale_schedule
from eqlv2.io import atomic_copy, atomic_link_or_copy


def _learning_rate_note(cfg, split: BatchSplit) -> str | None:
    """A warning when the batch differs from the one the learning rate is for and nothing rescales it."""
    auto = cfg.get("auto_scale_lr") or {}
    base = auto.get("base_batch_size")
    if base is None or base == split.global_batch or auto.get("enable", False):
        return None
    return (
        f"eqlv2: the learning rate is for a global batch of {base} (auto_scale_lr.base_batch_size) but this "
        f"run's is {split.global_batch}; set auto_scale_lr.enable=True to scale it linearly"
    )


CUBLAS_WORKSPACE_CONFIG = ":4096:8"  # the setting cuBLAS's reproducibility notes give for deterministic sums


def seed_run(cfg, seed: int, deterministic: bool = False) -> None:
    """Seed a run through mmengine's ``randomness``: Python's, numpy's and torch's generators, the data
    samplers' shuffling and the loader workers all derive from ``seed``, the same on every process (the
    samplers' shards must agree), so the same seed on the same machine trains the same model on a CPU.
    ``deterministic`` also asks torch for deterministic kernels (cuDNN included), slower on GPUs; CUDA's
    atomic additions (RoIAlign's backward among them) still reorder sums, so GPU runs of one seed differ
    in the last digits.  The seed is part of the config, hence of the run's fingerprint: another seed is
    another run, never resumed from this one's checkpoints.

    In deterministic mode torch refuses a cuBLAS matmul unless ``CUBLAS_WORKSPACE_CONFIG`` fixes cuBLAS's
    workspace, which cuBLAS reads when CUDA starts: so it is set here, before the Runner puts the model on
    the GPU (each of torchrun's processes calls this), unless the environment already chose a value.
    """
    cfg.randomness = {**cfg.get("randomness", {}), "seed": seed, "deterministic": deterministic}
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)


def allow_missing_deterministic_kernels(cfg) -> bool:
    """After the Runner is built: in deterministic mode, an operator torch has no deterministic CUDA kernel
    for warns (naming it, once) instead of stopping the run.

    mmengine turns on ``torch.use_deterministic_algorithms(True)``, under which such an operator raises
    at its first call, hours into a queued job.  This model's RoIAlign backward (mmcv's, atomic additions
    that torch does not know of) is not deterministic on CUDA in any mode, so a GPU run is never bitwise
    reproducible; what deterministic mode buys there is that every other kernel is, and a warning says
    which are not.  Returns whether deterministic mode is on.
    """
    import torch

    if not cfg.get("randomness", {}).get("deterministic", False):
        return False
    torch.use_deterministic_algorithms(True, warn_only=True)
    return True


def train(
    config: str | Path,
    work_dir: str | Path,
    out: str | Path,
    data_root: str | Path | None = None,
    cfg_options: dict | None = None,
    max_iters: int | None = None,
    launcher: str = "none",
    load_from: str | Path | None = None,
    amp: bool = False,
    seed: int | None = None,
    deterministic: bool = False,
) -> Path:
    """Train ``config``, resuming from ``work_dir`` if it holds a checkpoint of this run; return ``out``.

    ``load_from`` (a surgery checkpoint, for decoupled training) initialises a fresh run only.  ``amp``
    trains with mmengine's ``AmpOptimWrapper`` (a CUDA GPU is required).  ``seed`` and ``deterministic``
    set the config's ``randomness`` (:func:`seed_run`).
    """
    allow_mmengine_checkpoints()
    import_lvis()
    cfg = load_run_config(config, data_root, cfg_options, split="train")
    if max_iters is not None:
        rescale_schedule(cfg, max_iters)
    if seed is not None:
        seed_run(cfg, seed, deterministic)
    if amp:
        require_amp_device()
        use_amp_optim_wrapper(cfg)
    split = split_global_batch(
        cfg, launch_world_size(launcher), sets_per_process_batch(cfg_options), source=str(config)
    )
    cfg.work_dir = str(work_dir)
    prepare_launcher(cfg, launcher)
    atomic_checkpoints = write_checkpoints_atomically(cfg)
    if load_from is not None and not Path(load_from).is_file():
        raise FileNotFoundError(f"checkpoint {load_from} does not exist")
    fingerprint = run_fingerprint(cfg, load_from, split.global_batch)
    stale = None
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun sets RANK; the process group does not exist yet
        stale = prepare_work_dir(Path(work_dir), fingerprint)
    else:
        wait_for_work_dir(Path(work_dir), fingerprint)
    latest = latest_checkpoint(work_dir)
    if latest:
        # Resume this run; `load_from` of the config (a surgery checkpoint) only seeds a fresh run.
        cfg.resume = True
        cfg.load_from = latest
    else:
        cfg.resume = False
        if load_from is not None:
            cfg.load_from = str(load_from)
    runner = build_runner(cfg)
    runner.logger.info(f"eqlv2: {split}")
    if allow_missing_deterministic_kernels(cfg):
        runner.logger.info(
            "eqlv2: deterministic kernels where torch has them (CUBLAS_WORKSPACE_CONFIG="
            f"{os.environ.get('CUBLAS_WORKSPACE_CONFIG')}); an operator without one warns, naming itself"
        )
    if note := _learning_rate_note(cfg, split):
        runner.logger.warning(note)
    if stale:
        runner.logger.info(f"eqlv2: {work_dir} held another run's checkpoints; moved them to {stale}")
    if latest:
        runner.logger.info(f"eqlv2: resuming from {latest}")
    elif load_from is not None:
        check_init_checkpoint(runner.model, load_from)
    runner.train()
    if runner.rank != 0:  # rank 0 writes the checkpoints, and publishes the final one
        return Path(out)
    final = latest_checkpoint(work_dir)
    if final is None:
        raise RuntimeError(f"training finished but {work_dir} holds no checkpoint")
    (atomic_link_or_copy if atomic_checkpoints else atomic_copy)(final, out)
    return Path(out)
