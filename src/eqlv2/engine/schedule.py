"""Shortening a training schedule (``eqlv2 train --max-iters``) without changing its shape."""

from __future__ import annotations


def rescale_schedule(cfg, max_iters: int) -> None:
    """Change the number of iterations, moving every scheduler boundary in proportion.

    A quick run then keeps the shape of the full schedule (warm-up, steps at the same fractions).
    """
    old = cfg.train_cfg.max_iters
    factor = max_iters / old
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters + 1
    for scheduler in cfg.get("param_scheduler") or []:
        if scheduler.get("by_epoch", True):
            raise ValueError("--max-iters needs iteration-based schedulers (by_epoch=False)")
        for key in ("begin", "end"):
            if key in scheduler:
                scheduler[key] = max(1 if key == "end" else 0, round(scheduler[key] * factor))
        if "milestones" in scheduler:
            scheduler["milestones"] = [max(1, round(m * factor)) for m in scheduler["milestones"]]
