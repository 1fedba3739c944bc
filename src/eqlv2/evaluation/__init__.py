"""Evaluation protocols: LVIS v1 (through the published ``lvis`` package)."""
