"""Loading checkpoints safely: ``weights_only=True`` with an explicit allow-list, never arbitrary pickles.

torch >= 2.6 unpickles with ``weights_only=True`` by default, which rejects mmengine's training
checkpoints: they carry the message hub's ``HistoryBuffer`` objects (with numpy arrays inside) so that
``Runner.resume`` can restore the logged history.  Turning ``weights_only`` off would run any code a
checkpoint file contains.  Instead we allow exactly the classes an mmengine checkpoint holds.

One of them needs care: a ``HistoryBuffer`` pickles its statistic methods as
``getattr(HistoryBuffer, "mean")``.  Allowing the real ``builtins.getattr`` would let a crafted file
reach any attribute of any allowed object (``ndarray.tofile`` writes files), so the name
``builtins.getattr`` is bound to ``history_buffer_statistic``, which only hands out those methods.

A file that does not load is one line (a ``ValueError``, which the CLI prints as ``eqlv2 VERB: error:``):
the file and why, in a few words.  torch's own message is never passed on: it suggests re-running
``torch.load`` with the safe loading switched off, the one thing not to do with a file that fails it.
mmengine's loads of local files (``load_from``, ``resume``) go through the same function.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

MapLocation = str | torch.device | Callable | None
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6: a zip archive
PICKLE_MAGIC = b"\x80"  # a pickle of protocol 2 or above (torch's legacy format is protocol 2)


def history_buffer_statistic(owner: object, name: str):
    """Stand-in for ``getattr`` while unpickling: only ``HistoryBuffer``'s statistic methods."""
    if owner is HistoryBuffer and name in ("min", "max", "current", "mean"):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"it asks for getattr({owner!r}, {name!r}), not a HistoryBuffer statistic")


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


# What torch's safe unpickler refused, read from the text of its error (which also holds its advice).
_REFUSALS = (
    (re.compile(r"GLOBAL (\S+)"), "it asks for a global outside the allow-list: {}"),
    (re.compile(r"(it asks for getattr\(.*?\), not a HistoryBuffer statistic)"), "{}"),
    (re.compile(r"but got <class '([^']+)'>"), "it builds an object outside the allow-list: {}"),
    (
        re.compile(r"Unsupported operand (\d+)"),
        "it uses pickle opcode {}, which the safe loader does not read",
    ),
)


def allow_mmengine_checkpoints() -> None:
    """Register the allow-list with torch, and :func:`load_checkpoint` as mmengine's loader of local files,
    so that mmengine's own loads (``load_from``, ``resume``) accept checkpoints and fail in one line."""
    torch.serialization.add_safe_globals(CHECKPOINT_SAFE_GLOBALS)
    CheckpointLoader.register_scheme(prefixes="", loader=load_checkpoint, force=True)


def load_checkpoint(path: str | Path, map_location: MapLocation = "cpu") -> dict[str, Any]:
    """Load a checkpoint (onto the CPU unless told otherwise) with ``weights_only=True`` and the allow-list.

    Raises:
        FileNotFoundError: There is no such file.
        ValueError: The file does not load: its path and the reason, in one line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    with torch.serialization.safe_globals(CHECKPOINT_SAFE_GLOBALS), warnings.catch_warnings():
        # torch warns of a pickle protocol other than its own before it fails on it: the reason says it
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, KeyError, ...
            reason = _unloadable_reason(path, err)
    # Not chained: torch's message, with its advice, would come back in every traceback.
    raise ValueError(f"{path}: not a loadable checkpoint ({reason})")


def _unloadable_reason(path: Path, err: Exception) -> str:
    """Why ``path`` did not load, in a few words: what the file is, or what its pickle asks for."""
    with path.open("rb") as file:
        head = file.read(len(ZIP_MAGIC))
    if not head:
        return "the file is empty"
    if not head.startswith((ZIP_MAGIC, PICKLE_MAGIC)):
        return "not a zip or pickle file"
    if isinstance(err, pickle.UnpicklingError):
        return _refusal(str(err))
    if not head.startswith(ZIP_MAGIC):
        return "a truncated or damaged pickle"
    if zipfile.is_zipfile(path):
        return "a zip archive torch cannot read as a checkpoint"
    return "a truncated or damaged zip archive"


def _refusal(message: str) -> str:
    """What torch's safe unpickler refused, from its message, leaving out the advice that comes with it."""
    for pattern, reason in _REFUSALS:
        if match := pattern.search(message):
            return reason.format(match[1])
    return "its pickle holds something the safe loader refuses"
