"""Writing outputs so that a killed process never leaves a file a rerun would take as finished."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _umask_mode() -> int:
    """The mode a plainly created file would get (mkstemp's files are private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_open(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at ``path`` only once the block completes (temp file, fsync, rename).

    If the block raises, or the process dies, ``path`` keeps whatever it held before (usually nothing);
    a dead process leaves at most a hidden ``.<name>.*.part`` beside it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` so that ``dst`` is either absent or complete."""
    with open(src, "rb") as source, atomic_open(dst) as handle:
        shutil.copyfileobj(source, handle, length=16 * 1024 * 1024)
    return Path(dst)


def atomic_link_or_copy(src: str | Path, dst: str | Path) -> Path:
    """Make ``dst`` a hard link to ``src`` (one rename, so atomic), or a copy where links cannot be made.

    Only for files that are never rewritten in place, like the checkpoints :mod:`eqlv2.engine.run` writes
    (each one a new file renamed over the path): a Mask R-CNN checkpoint is 350-400 MB, and publishing
    it as a copy doubled what every training run left on disk.  Another file system, or one without
    hard links, falls back to :func:`atomic_copy`.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.link"
    try:
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
    except OSError:
        return atomic_copy(src, dst)
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dst


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` so that ``path`` is either absent or a complete checkpoint."""
    import torch  # only the checkpoint tools need it; keep ``eqlv2.io`` light

    with atomic_open(path) as handle:
        torch.save(obj, handle)
    return Path(path)
