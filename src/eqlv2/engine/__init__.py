"""Training-loop components (mmengine hooks, the atomic checkpoint backend)."""

from .atomic_backend import BACKEND_NAME, AtomicLocalBackend
from .classifier_gradients import ClassifierGradientHook
from .hooks import GradientStatsHook, NonFiniteLossHook

__all__ = [
    "BACKEND_NAME",
    "AtomicLocalBackend",
    "ClassifierGradientHook",
    "GradientStatsHook",
    "NonFiniteLossHook",
]
