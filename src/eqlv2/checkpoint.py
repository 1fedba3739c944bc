"""Loading checkpoints safely: ``weights_only=True`` with an explicit allow-list, never arbitrary pickles.

torch >= 2.6 unpickles with ``weights_only=True`` by default, which rejects mmengine's training
checkpoints: they carry the message hub's ``HistoryBuffer`` objects (with numpy arrays inside) so that
``Runner.resume`` can restore the logged history.  Turning ``weights_only`` off would run any code a
checkpoint file contains.  Instead we allow exactly the classes an mmengine checkpoint holds.

One of them needs care: a ``HistoryBuffer`` pickles its statistic methods as
``getattr(HistoryBuffer, "mean")``.  Allowing the real ``builtins.getattr`` would let a crafted file
reach any attribute of any allowed object (``ndarray.tofile`` writes files), so the name
``builtins.getattr`` is bound to ``history_buffer_statistic``, which only hands out those methods.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer


def history_buffer_statistic(owner: object, name: str):
    """Stand-in for ``getattr`` while unpickling: only ``HistoryBuffer``'s statistic methods."""
    if owner is HistoryBuffer and name in ("min", "max", "current", "mean"):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"checkpoint asks for getattr({owner!r}, {name!r}); only HistoryBuffer statistics are allowed"
    )


# Everything an mmengine (0.10) training checkpoint pickles beyond tensors, dicts, lists and scalars.
CHECKPOINT_SAFE_GLOBALS = [
    HistoryBuffer,
    (history_buffer_statistic, "builtins.getattr"),
    np.ndarray,
    np.dtype,
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    type(np.dtype(np.float64)),
    type(np.dtype(np.float32)),
    type(np.dtype(np.int64)),
    type(np.dtype(np.int32)),
    type(np.dtype(np.bool_)),
]


def allow_mmengine_checkpoints() -> None:
    """Register the allow-list with torch, so mmengine's own ``torch.load`` calls accept checkpoints."""
    torch.serialization.add_safe_globals(CHECKPOINT_SAFE_GLOBALS)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint onto the CPU with ``weights_only=True`` and the allow-list."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError or EOFError
            raise ValueError(f"{path}: not a loadable checkpoint ({type(err).__name__}: {err})") from err
