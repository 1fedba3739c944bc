"""Specification of the Effective Class-Margin loss (``eqlv2.models.losses.ECMLoss``) from hand cases.

The margins and weights from hand-computed image counts, the loss and its gradient against a plain
autograd transcription of the paper's formula, the background column, and the mmdet head hooks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS

import eqlv2.models  # noqa: F401  (registers the losses)
from eqlv2.models.losses import ECMLoss

C = 3
BG = C
# Image counts of labels 0..2 and fg_bg_ratio 2: background 2 * 81 = 162, total 243.
IMAGE_COUNTS = [64, 16, 1]
RATIO = 2.0


def write_ann(path: Path, image_counts: list[int]) -> str:
    categories = [{"id": k + 1, "name": f"c{k + 1}", "image_count": n} for k, n in enumerate(image_counts)]
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 1} for i in range(100)]
    path.write_text(json.dumps({"categories": categories[::-1], "annotations": annotations, "images": []}))
    return str(path)


@pytest.fixture
def ann3(tmp_path) -> str:
    return write_ann(tmp_path / "train3.json", IMAGE_COUNTS)


def ecm(ann: str, **kwargs) -> ECMLoss:
    return MODELS.build(dict(type="ECMLoss", num_classes=C, ann_file=ann, fg_bg_ratio=RATIO, **kwargs))


def hand_margins() -> list[tuple[float, float, float]]:
    """(gamma+, gamma-, omega) of labels 0, 1, 2 and the background, by the paper's formulas."""
    n = [*IMAGE_COUNTS, RATIO * sum(IMAGE_COUNTS)]
    out = []
    for n_pos in n:
        n_neg = sum(n) - n_pos
        a = n_neg / n_pos
        rp, rn = n_pos**0.25, n_neg**0.25
        out.append((rn / (rp + rn), rp / (rp + rn), a * math.log(1 + 1 / a)))
    return out


def formula(z: torch.Tensor, labels: torch.Tensor, loss: ECMLoss) -> torch.Tensor:
    """Eqs. 10-11 as written: omega-weighted BCE of s^ = (e^z / g+) / (e^z / g+ + e^-z / g-), sum / N."""
    gp, gn, w = loss.gamma_pos.double(), loss.gamma_neg.double(), loss.class_weight.double()
    z = z.double()
    pos, neg = torch.exp(z) / gp, torch.exp(-z) / gn
    s = pos / (pos + neg)
    y = torch.nn.functional.one_hot(labels, C + 1).double()
    return -(w * (y * torch.log(s) + (1 - y) * torch.log(1 - s))).sum() / z.size(0)


def test_margins_and_weights_from_hand_computed_counts(ann3):
    loss = ecm(ann3)
    got = list(zip(loss.gamma_pos.tolist(), loss.gamma_neg.tolist(), loss.class_weight.tolist(), strict=True))
    for (gp, gn, w), want in zip(got, hand_margins(), strict=True):
        assert (gp, gn, w) == pytest.approx(want, rel=1e-6)
    # The rarest class (1 image of 243 samples): gamma+ = 242^(1/4) / (1 + 242^(1/4)).
    assert loss.gamma_pos[2].item() == pytest.approx(242**0.25 / (1 + 242**0.25), rel=1e-6)
    # The shift of the doubled logit is log(n+/n-) / 4: the rarer the class, the lower.
    want_shift = [math.log(n / (243 - n)) / 4 for n in [*IMAGE_COUNTS, 162]]
    assert loss.logit_shift.tolist() == pytest.approx(want_shift, rel=1e-6)
    assert dict(loss.state_dict()) == {}  # constants of ann_file, not checkpointed


def test_loss_and_gradient_equal_autograd_of_the_formula(ann3):
    loss = ecm(ann3)
    torch.manual_seed(0)
    z = (torch.randn(7, C + 1) * 3).requires_grad_()
    labels = torch.tensor([0, 1, 2, BG, BG, 0, BG])
    got = loss(z, labels)
    got.backward()
    z_ref = z.detach().clone().requires_grad_()
    want = formula(z_ref, labels, loss)
    want.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    torch.testing.assert_close(z.grad, z_ref.grad, rtol=1e-5, atol=1e-6)


def test_a_hand_case_of_one_roi(ann3):
    """One RoI of label 2, all logits 0: s^_c = gamma-_c (the shifted sigmoid of 0), so the loss is
    -omega_2 log(gamma-_2) - sum_{c != 2} omega_c log(1 - gamma-_c), and dL/dz_c = 2 omega_c (s^_c - y_c)."""
    loss = ecm(ann3)
    z = torch.zeros(1, C + 1, requires_grad=True)
    value = loss(z, torch.tensor([2]))
    value.backward()
    margins = hand_margins()
    want = -sum(w * math.log(gn if c == 2 else 1 - gn) for c, (_, gn, w) in enumerate(margins))
    assert value.item() == pytest.approx(want, rel=1e-6)
    want_grad = [2 * w * (gn - (c == 2)) for c, (_, gn, w) in enumerate(margins)]
    assert z.grad[0].tolist() == pytest.approx(want_grad, rel=1e-5)


def test_the_background_column_is_a_class_with_its_own_margin(ann3):
    """A background RoI's target is 1 on the last channel, with the background's margin and weight."""
    loss = ecm(ann3)
    z = torch.zeros(1, C + 1, requires_grad=True)
    loss(z, torch.tensor([BG]), reduction_override="none").sum().backward()
    _, gn_bg, w_bg = hand_margins()[BG]
    assert z.grad[0, BG].item() == pytest.approx(2 * w_bg * (gn_bg - 1), rel=1e-5)
    assert bool((z.grad[0, :BG] > 0).all())  # the classes are pushed down on background


def test_reductions_weight_and_bad_input(ann3):
    loss = ecm(ann3)
    z = torch.randn(5, C + 1)
    labels = torch.tensor([0, BG, 1, BG, 2])
    none = loss(z, labels, reduction_override="none")
    assert none.shape == (5, C + 1)
    assert loss(z, labels, reduction_override="sum").item() == pytest.approx(none.sum().item(), rel=1e-6)
    assert loss(z, labels).item() == pytest.approx(none.sum().item() / 5, rel=1e-6)
    assert ecm(ann3, loss_weight=2.5)(z, labels).item() == pytest.approx(
        2.5 * loss(z, labels).item(), rel=1e-6
    )
    empty = torch.zeros(0, C + 1, requires_grad=True)
    out = loss(empty, torch.zeros(0, dtype=torch.long))
    assert out.item() == 0
    out.backward()
    with pytest.raises(AssertionError):
        loss(z, labels, reduction_override="avg")
    with pytest.raises(ValueError, match="avg_factor"):
        loss(z, labels, avg_factor=2.0, reduction_override="sum")
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        loss(z, torch.tensor([0, 4, 1, 1, 1]))


def test_a_class_without_images_is_refused_naming_the_file(tmp_path):
    ann = write_ann(tmp_path / "train.json", [5, 0, 1])
    with pytest.raises(ValueError, match=r"train.json: ECMLoss: 1 classes have no training image"):
        ecm(ann)


def test_head_hooks_in_shared2fc_bbox_head(ann3):
    from eqlv2.models import SIGMOID_PRIOR_INIT_CFG

    loss_cfg = dict(type="ECMLoss", num_classes=C, ann_file=ann3, fg_bg_ratio=RATIO)
    head = MODELS.build(dict(type="Shared2FCBBoxHead", in_channels=8, fc_out_channels=16, roi_feat_size=7,
                             num_classes=C, loss_cls=loss_cfg, init_cfg=SIGMOID_PRIOR_INIT_CFG))  # fmt: skip
    head.init_weights()
    assert head.fc_cls.out_features == C + 1  # get_cls_channels: C classes and the background
    loss = head.loss_cls
    z = torch.tensor([[2.0, -1.0, 0.0, -3.0], [0.0, 0.0, 0.0, 4.0]])
    scores = loss.get_activation(z)
    p = torch.sigmoid(z)
    torch.testing.assert_close(scores[:, :C], p[:, :C] * (1 - p[:, C:]))  # no margin at test time
    torch.testing.assert_close(scores[:, C], p[:, C])
    acc = loss.get_accuracy(z, torch.tensor([0, BG]))
    assert acc["acc_objectness"].item() == 100.0  # background iff p(background) > 0.5
    assert acc["acc_classes"].item() == 100.0
    acc = loss.get_accuracy(z, torch.tensor([1, 0]))
    assert acc["acc_objectness"].item() == 50.0 and acc["acc_classes"].item() == 50.0  # argmax 0 on ties
