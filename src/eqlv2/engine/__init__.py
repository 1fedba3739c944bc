"""Training-loop components (mmengine hooks)."""

from .hooks import GradientStatsHook, NonFiniteLossHook

__all__ = ["GradientStatsHook", "NonFiniteLossHook"]
