"""``LWSLinear`` and ``LWSBBoxHead``: the original LWS classifier forward and checkpoint compatibility."""

from __future__ import annotations

import pytest
import torch
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.registry import MODELS
from torch import nn

import eqlv2.models  # noqa: F401  (registers LWSLinear, LWSBBoxHead)
from eqlv2.models import LWSBBoxHead, LWSLinear

HEAD_CFG = dict(in_channels=8, fc_out_channels=16, roi_feat_size=2, num_classes=3)


def test_forward_is_scaled_rows_plus_unscaled_bias():
    layer = LWSLinear(2, 3)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.5]]))
        layer.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
        layer.scales.copy_(torch.tensor([2.0, 0.5, -1.0]))
    x = torch.tensor([[1.0, 1.0], [2.0, -1.0]])
    # y[n, j] = s_j * sum_k W[j, k] x[n, k] + b_j, by hand:
    expected = torch.tensor(
        [
            [2.0 * (1 + 2) + 0.1, 0.5 * (3 + 4) + 0.2, -1.0 * (-1 + 0.5) + 0.3],
            [2.0 * (2 - 2) + 0.1, 0.5 * (6 - 4) + 0.2, -1.0 * (-2 - 0.5) + 0.3],
        ]
    )
    torch.testing.assert_close(layer(x), expected)


def test_unit_scales_equal_the_plain_linear():
    torch.manual_seed(0)
    layer = LWSLinear(5, 4)
    assert layer.scales.shape == (4,)
    assert torch.equal(layer.scales, torch.ones(4))
    plain = nn.Linear(5, 4)
    plain.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    x = torch.randn(7, 5)
    torch.testing.assert_close(layer(x), plain(x))


def test_scales_get_gradients_and_reset():
    layer = LWSLinear(3, 2)
    layer(torch.randn(4, 3)).sum().backward()
    assert layer.scales.grad is not None and layer.scales.grad.shape == (2,)
    with torch.no_grad():
        layer.scales.fill_(3.0)
    layer.reset_parameters()
    assert torch.equal(layer.scales, torch.ones(2))


def test_head_has_lws_classifier_of_the_baseline_shape():
    head = MODELS.build(dict(type="LWSBBoxHead", **HEAD_CFG))
    base = MODELS.build(dict(type="Shared2FCBBoxHead", **HEAD_CFG))
    assert isinstance(head, Shared2FCBBoxHead) and isinstance(head.fc_cls, LWSLinear)
    assert head.fc_cls.weight.shape == base.fc_cls.weight.shape == (4, 16)  # num_classes + 1 rows
    head.init_weights()  # mmdet's Normal(0, 0.01) init of fc_cls must leave the scales at 1
    assert torch.equal(head.fc_cls.scales, torch.ones(4))


def test_baseline_state_dict_loads_with_only_the_scales_missing():
    base = MODELS.build(dict(type="Shared2FCBBoxHead", **HEAD_CFG))
    head = MODELS.build(dict(type="LWSBBoxHead", **HEAD_CFG))
    result = head.load_state_dict(base.state_dict(), strict=False)
    assert result.missing_keys == ["fc_cls.scales"]
    assert result.unexpected_keys == []
    assert torch.equal(head.fc_cls.scales, torch.ones(4))
    feats = torch.randn(5, 8, 2, 2)
    base.eval(), head.eval()
    for got, want in zip(head(feats), base(feats), strict=True):
        torch.testing.assert_close(got, want)  # with unit scales the LWS head is the baseline head


def test_head_rejects_another_classifier_type():
    with pytest.raises(ValueError, match="LWSLinear"):
        LWSBBoxHead(cls_predictor_cfg=dict(type="Linear"), **HEAD_CFG)
