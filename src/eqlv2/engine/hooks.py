"""mmengine hooks: saving EQLv2's gradient statistics, and stopping on a non-finite loss."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from eqlv2.errors import NonFiniteLossError

STAT_NAMES = ("pos_grad", "neg_grad", "pos_neg")


def _statistics_modules(model) -> dict[str, torch.nn.Module]:
    if is_model_wrapper(model):
        model = model.module
    return {name: m for name, m in model.named_modules() if all(hasattr(m, s) for s in STAT_NAMES)}


@HOOKS.register_module()
class GradientStatsHook(Hook):
    """Save every rank's EQLv2 statistics (``pos_grad``, ``neg_grad``, ``pos_neg``) after training.

    One file per rank, ``<work_dir>/gradient_stats_rank<r>.pt``: what the paper plots (the per-class ratio
    of accumulated positive to negative gradients, sorted by instance count; the author's answer in
    tztztztztz/eqlv2 issue #18), and the evidence that the statistics agree on every rank of a
    distributed run.
    """

    priority = "LOW"

    def before_train(self, runner) -> None:
        """Log the statistics the run starts from: zero for a fresh run, the checkpoint's on resume."""
        for name, module in _statistics_modules(runner.model).items():
            sums = ", ".join(f"{s}={float(getattr(module, s).double().sum()):.6g}" for s in STAT_NAMES[:2])
            runner.logger.info(f"eqlv2: {name} starts at iteration {runner.iter} with {sums}")

    def after_train(self, runner) -> None:
        stats = {
            name: {s: getattr(module, s).detach().cpu().clone() for s in STAT_NAMES}
            for name, module in _statistics_modules(runner.model).items()
        }
        if stats:
            path = Path(runner.work_dir) / f"gradient_stats_rank{get_rank()}.pt"
            torch.save({"iter": runner.iter, "stats": stats}, path)


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop training with a clear error when the loss becomes NaN or infinite.

    mmengine keeps training on NaN (a probe of EQLv2 at 8x the original's learning rate diverged within 150
    iterations and then ran 1650 more on NaN).  The error names the iteration and the loss terms, and the
    last checkpoint written before it stays the one a rerun resumes from.
    """

    priority = "VERY_HIGH"

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not outputs:
            return
        bad = {k: float(v) for k, v in outputs.items() if torch.is_tensor(v) and not math.isfinite(float(v))}
        if bad:
            terms = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
            raise NonFiniteLossError(
                f"non-finite loss at iteration {runner.iter + 1} ({terms}); lower the learning rate or "
                f"check the data (work dir {runner.work_dir})"
            )
