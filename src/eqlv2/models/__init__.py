"""Model components.  Importing this package registers them in mmdet's ``MODELS`` registry."""

from .decoupled import DecoupledMaskRCNN
from .init import SIGMOID_PRIOR_INIT_CFG, sigmoid_prior_init_cfg
from .losses import EQL, EQLv2, GroupSoftmax
from .lws import LWSBBoxHead, LWSLinear
from .mask_head import LabelMaskHead
from .norcal import NorCalBBoxHead

__all__ = [
    "EQL",
    "EQLv2",
    "GroupSoftmax",
    "DecoupledMaskRCNN",
    "LWSBBoxHead",
    "LWSLinear",
    "LabelMaskHead",
    "NorCalBBoxHead",
    "SIGMOID_PRIOR_INIT_CFG",
    "sigmoid_prior_init_cfg",
]
