"""NorCal (Pan et al. 2021) at prediction time: hand-computed scores, γ = 0 is the plain head, calibration
comes before mmdet's score threshold / NMS / per-image cut, and non-softmax heads are refused."""

from __future__ import annotations

import json
import math

import pytest
import torch
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

import eqlv2.models  # noqa: F401  (registers NorCalBBoxHead)
from eqlv2.models.norcal import load_norcal_counts, norcal_scores

HEAD_CFG = dict(in_channels=8, fc_out_channels=16, roi_feat_size=2, num_classes=2)


@pytest.fixture()
def ann_file(tmp_path):
    """Two classes: image counts 4 and 1, instance counts 9 and 2."""
    path = tmp_path / "train.json"
    categories = [
        dict(id=1, name="common", image_count=4, instance_count=9),
        dict(id=2, name="rare", image_count=1, instance_count=2),
    ]
    path.write_text(json.dumps(dict(categories=categories, annotations=[], images=[])))
    return str(path)


def build(ann_file: str, gamma: float, **norcal):
    return MODELS.build(
        dict(type="NorCalBBoxHead", **HEAD_CFG, norcal=dict(ann_file=ann_file, gamma=gamma, **norcal))
    )


def test_counts_are_the_raw_image_or_instance_counts(ann_file):
    assert load_norcal_counts(ann_file, 2).tolist() == [4.0, 1.0]
    assert load_norcal_counts(ann_file, 2, count="instance").tolist() == [9.0, 2.0]


def test_scores_match_hand_computation():
    z = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # columns: common, rare, background
    counts = torch.tensor([4.0, 1.0])
    # gamma 0.5: exp(z_c) / n_c^0.5 on the foreground, exp(z_bg) unchanged, then divided by the row sum.
    row0 = [math.exp(2) / 2, math.exp(0) / 1, math.exp(1)]
    row1 = [1 / 2, 1.0, 1.0]
    expected = torch.tensor([[v / sum(row0) for v in row0], [v / sum(row1) for v in row1]])
    torch.testing.assert_close(norcal_scores(z, counts, 0.5), expected)


def _predict(head, cls_score, max_per_img):
    rois = torch.tensor([[0, 0, 0, 10, 10], [0, 50, 50, 60, 60], [0, 20, 70, 30, 80]], dtype=torch.float)
    bbox_pred = torch.zeros(rois.size(0), 4 * HEAD_CFG["num_classes"])
    cfg = ConfigDict(score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=max_per_img)
    return head._predict_by_feat_single(
        rois, cls_score, bbox_pred, img_meta=dict(img_shape=(100, 100)), rescale=False, rcnn_test_cfg=cfg
    )


def test_gamma_zero_reproduces_the_plain_head_exactly(ann_file):
    torch.manual_seed(0)
    cls_score = torch.randn(3, 3) * 3
    calibrated = _predict(build(ann_file, 0.0), cls_score, 100)
    plain = _predict(Shared2FCBBoxHead(**HEAD_CFG), cls_score, 100)
    assert len(plain.scores) > 0
    for key in ("bboxes", "scores", "labels"):
        assert torch.equal(calibrated[key], plain[key]), key


def test_calibration_runs_before_the_per_image_cut(ann_file):
    # Proposal 0 favours the common class, proposal 1 the rare one; with one detection per image the plain
    # head keeps the common one.  Calibrating only the kept detection afterwards would still give a common
    # detection; calibrating before the cut (γ = 1, n = 4 vs 1) lets the rare one win.
    cls_score = torch.tensor([[3.0, -5.0, 0.0], [-5.0, 2.0, 0.0], [-5.0, -5.0, 5.0]])
    plain = _predict(Shared2FCBBoxHead(**HEAD_CFG), cls_score, 1)
    assert plain.labels.tolist() == [0]
    calibrated = _predict(build(ann_file, 1.0), cls_score, 1)
    assert calibrated.labels.tolist() == [1]
    expected = norcal_scores(cls_score, torch.tensor([4.0, 1.0]), 1.0)[1, 1]
    torch.testing.assert_close(calibrated.scores, expected.reshape(1))
    assert calibrated.bboxes.tolist() == [[50.0, 50.0, 60.0, 60.0]]


def test_refuses_non_softmax_heads_and_bad_settings(ann_file):
    with pytest.raises(ValueError, match="plain softmax classifier"):
        MODELS.build(
            dict(
                type="NorCalBBoxHead",
                **HEAD_CFG,
                loss_cls=dict(type="EQLv2", num_classes=2),
                norcal=dict(ann_file=ann_file, gamma=0.5),
            )
        )
    with pytest.raises(ValueError, match="renormalize=False"):
        build(ann_file, 0.5, renormalize=False)
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        build(ann_file, -1.0)
    with pytest.raises(ValueError, match="count must be one of"):
        build(ann_file, 0.5, count="box")


def _toy_config(name: str):
    from mmengine.config import Config

    from eqlv2.config import resolve_config

    return Config.fromfile(str(resolve_config(f"toy/{name}")))


@pytest.mark.parametrize("name", ["mask-rcnn_r18_fpn_ce_toy.py", "mask-rcnn_r18_fpn_rfs_toy.py"])
def test_eqlv2_test_switches_softmax_heads_to_norcal(name):
    from eqlv2.config import training_ann_file
    from eqlv2.tools.test import apply_norcal

    cfg = _toy_config(name)
    apply_norcal(cfg, 0.4)
    head = cfg.model.roi_head.bbox_head
    assert head.type == "NorCalBBoxHead"
    assert head.norcal == dict(ann_file=str(training_ann_file(cfg)), gamma=0.4, count="image")
    assert "train" in head.norcal["ann_file"]


@pytest.mark.parametrize("name", ["mask-rcnn_r18_fpn_eql-loss_toy.py", "mask-rcnn_r18_fpn_eqlv2-loss_toy.py"])
def test_eqlv2_test_refuses_norcal_for_sigmoid_heads(name):
    from eqlv2.tools.test import apply_norcal

    with pytest.raises(ValueError, match="NorCal needs a softmax Shared2FCBBoxHead"):
        apply_norcal(_toy_config(name), 0.4)


def test_eqlv2_test_takes_the_norcal_setting():
    from eqlv2.cli import build_parser

    argv = ["test", "toy/mask-rcnn_r18_fpn_ce_toy.py", "--checkpoint", "m.pth", "--out-prefix", "p"]
    plain = build_parser().parse_args(argv)
    assert (plain.norcal_gamma, plain.norcal_count) == (None, "image")
    calibrated = build_parser().parse_args([*argv, "--norcal-gamma", "0.6", "--norcal-count", "instance"])
    assert (calibrated.norcal_gamma, calibrated.norcal_count) == (0.6, "instance")
