"""Learnable weight scaling (LWS, Kang et al. 2020, "Decoupling representation and classifier").

``LWSLinear`` is the original's ``LWSLinear``: a linear classifier whose weight rows are each multiplied by
a learnable scale, ``y = x (s ⊙ W)^T + b`` with ``s`` one scale per output (class), initialised to 1.
The bias is not scaled, and the background row is scaled like any other.  The scale vector is stored as
``scales`` with shape ``(out_features,)``; the original kept it as ``weight_scaler`` with shape
``(out_features, 1)`` (same values: ``weight_scaler.squeeze(1)``).

``LWSBBoxHead`` is mmdet's ``Shared2FCBBoxHead`` with ``fc_cls`` an ``LWSLinear`` of the same shape, so a
baseline checkpoint's ``roi_head.bbox_head.fc_cls.weight``/``.bias`` load unchanged and only
``fc_cls.scales`` is missing from it; a non-strict load (``load_from``) leaves the scales at 1.0, which
makes the LWS model start exactly at the baseline.  Freeze everything but the scales with
``DecoupledMaskRCNN(trainable=('roi_head.bbox_head.fc_cls.scales',))``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.registry import MODELS
from torch import nn


@MODELS.register_module()
class LWSLinear(nn.Linear):
    """``nn.Linear`` whose output rows are scaled by the learnable ``scales`` (shape ``(out_features,)``)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, **kwargs) -> None:
        super().__init__(in_features, out_features, bias=bias, **kwargs)
        self.scales = nn.Parameter(
            torch.ones(out_features, device=self.weight.device, dtype=self.weight.dtype)
        )

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if hasattr(self, "scales"):  # nn.Linear.__init__ calls this before ``scales`` exists
            nn.init.ones_(self.scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scales.unsqueeze(1), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + ", scales=per-output"


@MODELS.register_module()
class LWSBBoxHead(Shared2FCBBoxHead):
    """``Shared2FCBBoxHead`` with an ``LWSLinear`` classifier; takes the same arguments.

    ``cls_predictor_cfg`` may be omitted or given with ``type='LWSLinear'`` (extra keys are passed on);
    any other type is an error, since the head would then not be an LWS head.
    """

    def __init__(self, fc_out_channels: int = 1024, *args, cls_predictor_cfg: dict | None = None, **kwargs):
        cfg = dict(type="LWSLinear") if cls_predictor_cfg is None else dict(cls_predictor_cfg)
        if cfg.get("type") not in ("LWSLinear", LWSLinear):
            raise ValueError(f"LWSBBoxHead needs cls_predictor_cfg type 'LWSLinear', got {cfg.get('type')!r}")
        super().__init__(fc_out_channels, *args, cls_predictor_cfg=cfg, **kwargs)
