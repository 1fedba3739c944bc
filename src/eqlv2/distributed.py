"""torch.distributed on CPUs: what mmengine's ``pytorch`` launcher assumes away.

mmengine (0.10.7) initialises a ``pytorch``-launched process group with ``torch.cuda.set_device`` and wraps
the model in DDP with ``device_ids=[LOCAL_RANK]``; both fail without GPUs.  On a CPU machine the process
group is created here (gloo, from torchrun's environment) before the Runner, which then skips its own
initialisation, and DDP gets ``device_ids=None``.  On GPUs nothing changes.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def prepare_launcher(cfg, launcher: str) -> None:
    """Set ``cfg.launcher``; for a CPU-only ``pytorch`` launch, start the gloo process group now."""
    cfg.launcher = launcher
    if launcher != "pytorch" or torch.cuda.is_available():
        return
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")  # env:// — RANK, WORLD_SIZE, MASTER_ADDR/PORT from torchrun
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper.setdefault("type", "MMDistributedDataParallel")
    wrapper["device_ids"] = None
    wrapper.setdefault("broadcast_buffers", False)  # as mmengine's default: EQLv2's buffers sync themselves
    cfg.model_wrapper_cfg = wrapper
