"""Shortening a training schedule (``eqlv2 train --max-iters``) without changing its shape."""

from __future__ import annotations

# mmengine's LinearLR updates the factor only while begin <= step < end, so a warm-up of one iteration
# never leaves its start factor (the whole run would train at 0.001 x lr); two iterations reach 1.
MIN_WARMUP_ITERS = 2


def rescale_schedule(cfg, max_iters: int) -> None:
    """Change the number of iterations, moving every scheduler boundary in proportion.

    A quick run then keeps the shape of the full schedule (warm-up, steps at the same fractions).  A
    warm-up (a scheduler with ``start_factor``) keeps at least :data:`MIN_WARMUP_ITERS` iterations so that
    it ends at the base learning rate.

    Raises:
        ValueError: The config trains by epoch (``--max-iters`` needs an iteration-based schedule).
    """
    loop = cfg.train_cfg
    if "max_iters" not in loop:
        raise ValueError(
            f"--max-iters needs an iteration-based schedule, but train_cfg is {loop.get('type')!r} with "
            f"max_epochs={loop.get('max_epochs')}; shorten it with --cfg-options train_cfg.max_epochs=N"
        )
    factor = max_iters / loop.max_iters
    loop.max_iters = max_iters
    loop.val_interval = max_iters + 1
    for scheduler in cfg.get("param_scheduler") or []:
        if scheduler.get("by_epoch", True):
            raise ValueError("--max-iters needs iteration-based schedulers (by_epoch=False)")
        for key in ("begin", "end"):
            if key in scheduler:
                scheduler[key] = max(1 if key == "end" else 0, round(scheduler[key] * factor))
        if "start_factor" in scheduler and "end" in scheduler:
            shortest = min(scheduler.get("begin", 0) + MIN_WARMUP_ITERS, max_iters)
            scheduler["end"] = max(scheduler["end"], shortest)
        if "milestones" in scheduler:
            scheduler["milestones"] = [max(1, round(m * factor)) for m in scheduler["milestones"]]
