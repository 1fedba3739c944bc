"""Classification losses of the Equalization Loss papers and long-tail baselines, registered in mmdet's
``MODELS``."""

from .ecm import ECMLoss
from .eql import EQL
from .eqlv2 import EQLv2
from .federated import FederatedLoss
from .group_softmax import GroupSoftmax

__all__ = ["ECMLoss", "EQL", "EQLv2", "FederatedLoss", "GroupSoftmax"]
