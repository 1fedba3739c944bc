"""Workarounds for the published ``lvis`` 0.5.3 on today's stack, applied without patching it.

* ``import lvis`` calls ``logging.basicConfig`` and so hijacks the root logger (lvis-api issue #9, the
  reason the original project forked it).  ``import_lvis`` removes exactly the handlers it added.
* ``LVISEval.accumulate`` uses ``np.float``, removed in numpy 1.24.  ``numpy_float_alias`` provides the
  alias only while the call runs, so the rest of the process never sees a patched numpy.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from types import ModuleType

import numpy as np


def import_lvis() -> ModuleType:
    """Import ``lvis`` and undo its import-time ``logging.basicConfig``."""
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    import lvis

    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)
    return lvis


@contextlib.contextmanager
def numpy_float_alias() -> Iterator[None]:
    """Make ``np.float`` mean ``float`` for the duration of the block."""
    had = "float" in np.__dict__
    if not had:
        np.float = float  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if not had:
            del np.float  # type: ignore[attr-defined]
