"""eqlv2: the Equalization Loss family for long-tailed detection, as an mmdetection 3 plugin."""

__version__ = "0.1.0"
