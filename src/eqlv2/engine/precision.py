"""Mixed-precision training (``eqlv2 train --amp``) with mmengine's ``AmpOptimWrapper``.

As mmdet's own ``--amp``: the plain ``OptimWrapper`` becomes ``AmpOptimWrapper`` with dynamic loss
scaling, which runs the forward pass under ``torch.autocast`` (float16 on CUDA unless the config sets
``optim_wrapper.dtype``).  The parameters stay float32, and the losses of this package compute their
weights, reductions and EQLv2's statistics in float32 whatever the logits' dtype (see
``tests/test_amp.py``).  mmengine 0.10.7's wrapper asserts that a GPU is available, so on a machine
without one ``--amp`` is refused before anything is written.
"""

from __future__ import annotations

import torch

AMP_WRAPPER = "AmpOptimWrapper"


def require_amp_device() -> None:
    """Refuse ``--amp`` where mmengine's ``AmpOptimWrapper`` cannot run (no CUDA GPU)."""
    if not torch.cuda.is_available():
        raise ValueError(
            "--amp (train.amp: true) needs a CUDA GPU: mmengine's AmpOptimWrapper refuses to run without "
            "one; train without --amp on this machine"
        )


def use_amp_optim_wrapper(cfg) -> None:
    """Turn the config's ``OptimWrapper`` into an ``AmpOptimWrapper`` with dynamic loss scaling.

    Its optimizer, gradient clipping and parameter-wise settings are kept.  A config that already uses
    ``AmpOptimWrapper`` is left as it is; any other wrapper type is refused rather than replaced.
    """
    wrapper = cfg.optim_wrapper
    kind = wrapper.get("type", "OptimWrapper")
    if kind == AMP_WRAPPER:
        return
    if kind != "OptimWrapper":
        raise ValueError(f"--amp replaces optim_wrapper.type OptimWrapper, but the config has {kind!r}")
    wrapper["type"] = AMP_WRAPPER
    wrapper["loss_scale"] = "dynamic"
