"""``LabelMaskHead``: mmdet's ``FCNMaskHead`` in training, checkpoints and predicted masks, at a fraction of
its CPU inference cost (only each detection's own class is computed; an image's masks are pasted at once)."""

from __future__ import annotations

import pytest
import torch
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmengine.config import ConfigDict

from eqlv2.models import LabelMaskHead

HEAD = dict(num_convs=2, in_channels=8, conv_out_channels=8, num_classes=5)
TEST_CFG = ConfigDict(mask_thr_binary=0.5)


def _pair(**kwargs) -> tuple[FCNMaskHead, LabelMaskHead]:
    torch.manual_seed(0)
    reference = FCNMaskHead(**HEAD, **kwargs)
    ours = LabelMaskHead(**HEAD, **kwargs)
    ours.load_state_dict(reference.state_dict())  # the same parameters, under the same names
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0.0, 0.5)  # away from the init's near-zero logits, so masks have edges
        ours.load_state_dict(reference.state_dict())
    return reference, ours


def _detections(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rois_feats = torch.randn(n, 8, 14, 14, generator=g)
    xy = torch.rand(n, 2, generator=g) * 90
    wh = 4 + torch.rand(n, 2, generator=g) * 60  # up to half the image, some boxes past its edge
    bboxes = torch.cat([xy, xy + wh], dim=1)
    labels = torch.randint(0, HEAD["num_classes"], (n,), generator=g)
    return rois_feats, bboxes, labels


def test_training_forward_and_loss_are_fcn_mask_heads():
    reference, ours = _pair()
    feats, _, labels = _detections(6, seed=1)
    reference.train(), ours.train()
    torch.testing.assert_close(ours(feats), reference(feats), rtol=0, atol=0)
    assert ours(feats).shape == (6, HEAD["num_classes"], 28, 28)


def test_a_frozen_head_in_eval_mode_still_gives_the_logits_for_its_loss():
    """Decoupled methods (cRT, LWS, BAGS) freeze the mask head in eval mode and still compute its loss."""
    reference, ours = _pair()
    reference.eval(), ours.eval()
    feats, bboxes, labels = _detections(6, seed=5)
    torch.testing.assert_close(ours(feats), reference(feats), rtol=0, atol=0)
    meta = {"ori_shape": (128, 128), "scale_factor": (1.0, 1.0)}
    expected = reference._predict_by_feat_single(reference(feats), bboxes.clone(), labels, meta, TEST_CFG)
    got = ours._predict_by_feat_single(ours(feats), bboxes.clone(), labels, meta, TEST_CFG)
    assert torch.equal(got, expected)  # predicting with autograd on takes mmdet's path


@pytest.mark.parametrize("rescale, scale", [(False, 1.0), (True, 1.0), (True, 0.8)])
def test_predicted_masks_equal_fcn_mask_heads(rescale, scale):
    reference, ours = _pair()
    reference.eval(), ours.eval()
    feats, bboxes, labels = _detections(40, seed=2)
    meta = {"ori_shape": (120, 128), "scale_factor": (scale, scale)}
    with torch.no_grad():
        boxes_ref, boxes_ours = bboxes.clone(), bboxes.clone()
        expected = reference._predict_by_feat_single(
            reference(feats), boxes_ref, labels, meta, TEST_CFG, rescale=rescale
        )
        eval_out = ours(feats)
        assert eval_out.shape == (40, 8, 28, 28)  # the features the 1x1 convolution reads, not C maps
        got = ours._predict_by_feat_single(eval_out, boxes_ours, labels, meta, TEST_CFG, rescale=rescale)
    assert got.dtype == torch.bool and got.shape == expected.shape
    assert expected.any(dim=(1, 2)).sum() >= 20  # half the masks or more are not empty
    assert torch.equal(got, expected)
    # with rescale, both move the detections' boxes to the original scale in place
    torch.testing.assert_close(boxes_ours, boxes_ref)


def test_class_agnostic_head_uses_its_one_class():
    reference, ours = _pair(class_agnostic=True)
    reference.eval(), ours.eval()
    feats, bboxes, labels = _detections(10, seed=3)
    meta = {"ori_shape": (128, 128), "scale_factor": (1.0, 1.0)}
    with torch.no_grad():
        expected = reference._predict_by_feat_single(reference(feats), bboxes.clone(), labels, meta, TEST_CFG)
        got = ours._predict_by_feat_single(ours(feats), bboxes.clone(), labels, meta, TEST_CFG)
    assert torch.equal(got, expected)


def test_a_cascade_stage_is_refused():
    """Cascade Mask R-CNN and HTC average every stage's maps and predict with activate_map=True."""
    _, ours = _pair()
    ours.eval()
    feats, bboxes, labels = _detections(2, seed=4)
    with torch.no_grad(), pytest.raises(NotImplementedError, match="cannot be a stage of a cascade"):
        ours._predict_by_feat_single(
            ours(feats), bboxes, labels, {"ori_shape": (64, 64), "scale_factor": (1.0, 1.0)},
            TEST_CFG, activate_map=True,
        )  # fmt: skip
