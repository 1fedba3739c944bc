"""Iteration checkpoints written atomically: an mmengine file backend for local paths.

mmengine's ``CheckpointHook`` writes ``iter_N.pth`` through a file backend, and ``LocalBackend.put``
opens the final path and writes into it; a job killed during that write (SLURM preemption, an OOM kill)
leaves a truncated checkpoint under the final name.  ``eqlv2 train`` points the checkpoint hook at this
backend instead, which writes to a hidden temporary file beside the target and renames it into place
(:func:`eqlv2.io.atomic_open`), so ``iter_N.pth`` is either complete or absent.
"""

from __future__ import annotations

from pathlib import Path

from mmengine.fileio import LocalBackend, register_backend

from eqlv2.io import atomic_write_bytes

BACKEND_NAME = "eqlv2_atomic_local"


class AtomicLocalBackend(LocalBackend):
    """``LocalBackend`` whose writes appear at their path only once complete."""

    def put(self, obj: bytes, filepath: str | Path) -> None:
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath: str | Path, encoding: str = "utf-8") -> None:
        atomic_write_bytes(filepath, obj.encode(encoding))


register_backend(BACKEND_NAME, AtomicLocalBackend, force=True)
