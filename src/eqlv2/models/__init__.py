"""Model components.  Importing this package registers them in mmdet's ``MODELS`` registry."""

from .init import SIGMOID_PRIOR_INIT_CFG, sigmoid_prior_init_cfg
from .losses import EQL, EQLv2, GroupSoftmax

__all__ = ["EQL", "EQLv2", "GroupSoftmax", "SIGMOID_PRIOR_INIT_CFG", "sigmoid_prior_init_cfg"]
