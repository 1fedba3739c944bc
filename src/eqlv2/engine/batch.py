"""The global batch: the images of one optimizer step, kept whatever the number of processes.

mmengine's ``train_dataloader.batch_size`` is per process, so a config written for the paper's 8 GPUs x 2
images would train on 4 GPUs with 8 images per step: half the global batch, with the paper's learning rate
and schedule, and EQLv2's statistics summed over half as many images per step.  A config therefore states
its global batch, and ``eqlv2 train`` divides it over the processes.

The global batch is ``auto_scale_lr.base_batch_size``, which every mmdet config already carries with that
meaning ("the total batch size the learning rate is for"; 16 = 8 GPUs x 2 images in mmdet's schedules, and
the toy configs set theirs).  Keeping the real batch equal to it also keeps mmengine's ``auto_scale_lr``
at a factor of 1.  A per-process ``train_dataloader.batch_size`` given in ``--cfg-options`` is taken as
mmengine means it instead, and the global batch is then that times the number of processes.

There is no gradient accumulation: EQLv2 updates its statistics in every forward pass, so a second
micro-batch would already be weighted by statistics that include the first, unlike a run in which all
images of a step see the same weights; and mmengine would count each micro-batch as an iteration of the
schedule.  Each process must therefore hold ``global / processes`` images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

GLOBAL_BATCH_KEY = "auto_scale_lr.base_batch_size"
PER_PROCESS_KEY = "train_dataloader.batch_size"


def launch_world_size(launcher: str, env: Mapping[str, str] = os.environ) -> int:
    """The number of training processes, known before the process group exists.

    torchrun exports ``WORLD_SIZE``; under SLURM every task is a process (``SLURM_NTASKS``, which is what
    mmengine's slurm launcher reads); a plain launch is one process.
    """
    if launcher == "pytorch":
        return int(env.get("WORLD_SIZE", "1"))
    if launcher == "slurm":
        return int(env.get("SLURM_NTASKS", "1"))
    return 1


def sets_per_process_batch(cfg_options: Mapping | None) -> bool:
    """Whether ``--cfg-options`` gives the per-process batch (``train_dataloader.batch_size=N``)."""
    if not cfg_options:
        return False
    nested = cfg_options.get("train_dataloader")
    return PER_PROCESS_KEY in cfg_options or (isinstance(nested, Mapping) and "batch_size" in nested)


@dataclass(frozen=True)
class BatchSplit:
    """How the images of one optimizer step are spread over the processes."""

    global_batch: int
    world_size: int
    per_process: int

    def __str__(self) -> str:
        processes = "1 process" if self.world_size == 1 else f"{self.world_size} processes"
        return f"global batch {self.global_batch} images = {processes} x {self.per_process}"


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def split_global_batch(
    cfg, world_size: int, per_process_given: bool = False, source: str = "config"
) -> BatchSplit:
    """Set ``cfg.train_dataloader.batch_size`` to the config's global batch over ``world_size`` processes.

    ``per_process_given``: the command line set ``train_dataloader.batch_size`` itself, which is then kept.
    ``source`` names the config in error messages.

    Raises:
        ValueError: The config states no global batch, or it does not divide over the processes.
    """
    loader = cfg.train_dataloader
    if per_process_given:
        return BatchSplit(loader.batch_size * world_size, world_size, loader.batch_size)
    global_batch = (cfg.get("auto_scale_lr") or {}).get("base_batch_size")
    if not isinstance(global_batch, int) or isinstance(global_batch, bool) or global_batch < 1:
        raise ValueError(
            f"{source}: {GLOBAL_BATCH_KEY} must give the global batch (images per optimizer step, e.g. 16 "
            f"for 8 GPUs x 2), got {global_batch!r}"
        )
    if global_batch % world_size:
        raise ValueError(
            f"{source}: the global batch of {global_batch} images ({GLOBAL_BATCH_KEY}) does not divide over "
            f"{world_size} processes; use {_divisors(global_batch)} GPUs (or processes)"
        )
    loader.batch_size = global_batch // world_size
    return BatchSplit(global_batch, world_size, loader.batch_size)
