"""``DecoupledMaskRCNN``: freezing at construction, frozen modules in eval mode, one SGD step moves only
the trainable parameters.

The model is mmdet's Mask R-CNN config shrunk to a ResNet-18 at quarter width (16-32-64-128 channels)
with 3 classes.  The backbone is built with ``frozen_stages=-1`` and ``norm_eval=False`` on purpose, so
that every frozen flag and every eval-mode BatchNorm checked here comes from ``DecoupledMaskRCNN`` and
not from ResNet's own options.
"""

from __future__ import annotations

import copy

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.structures import InstanceData
from torch import nn

import eqlv2.plugin  # noqa: F401  (registers the models)
from eqlv2.checkpoint import load_checkpoint
from eqlv2.models import DecoupledMaskRCNN, LWSLinear
from eqlv2.tools.surgery import surgery

CONFIG = """
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
model = dict(
    type='DecoupledMaskRCNN',
    trainable=('roi_head.bbox_head.fc_cls',),
    backbone=dict(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=32),
    rpn_head=dict(in_channels=32, feat_channels=32),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=32),
        bbox_head=dict(in_channels=32, fc_out_channels=64, num_classes=3),
        mask_roi_extractor=dict(out_channels=32),
        mask_head=dict(num_convs=1, in_channels=32, conv_out_channels=32, num_classes=3)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=200, max_per_img=100), rcnn=dict(sampler=dict(num=32))))
"""
CRT = ("roi_head.bbox_head.fc_cls",)
LWS = ("roi_head.bbox_head.fc_cls.scales",)


@pytest.fixture(scope="module")
def model_cfg(tmp_path_factory):
    register_all_modules()
    path = tmp_path_factory.mktemp("cfg") / "decoupled_tiny.py"
    path.write_text(CONFIG)
    return Config.fromfile(str(path)).model


def build(model_cfg, trainable=CRT, **bbox_head):
    cfg = copy.deepcopy(model_cfg)
    cfg.trainable = trainable
    cfg.roi_head.bbox_head.update(bbox_head)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def trainable_names(model):
    return [n for n, p in model.named_parameters() if p.requires_grad]


def test_crt_only_the_classifier_requires_grad(model_cfg):
    model = build(model_cfg)
    assert isinstance(model, DecoupledMaskRCNN)
    assert trainable_names(model) == ["roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_cls.bias"]
    model.init_weights()  # the runner calls it after wrapping the model; the flags must survive
    assert trainable_names(model) == ["roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_cls.bias"]


def test_lws_only_the_scales_require_grad(model_cfg):
    model = build(model_cfg, LWS, type="LWSBBoxHead")
    assert isinstance(model.roi_head.bbox_head.fc_cls, LWSLinear)
    assert trainable_names(model) == ["roi_head.bbox_head.fc_cls.scales"]


@pytest.mark.parametrize(
    "trainable",
    [("roi_head.bbox_head.fc_clss",), ("roi_head.bbox_head.fc_cls.scales",), ("roi_head.bbox_head.fc",), ()],
)
def test_prefix_matching_no_parameter_is_an_error(model_cfg, trainable):
    # a plain head has no scales; "fc" is not a whole component of "fc_cls"/"fc_reg"; () freezes everything
    with pytest.raises(ValueError, match="trainable"):
        build(model_cfg, trainable)


def test_train_keeps_frozen_modules_in_eval_mode(model_cfg):
    model = build(model_cfg).train()
    assert model.training
    batch_norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert batch_norms and not any(m.training for m in batch_norms)
    for frozen in (model.backbone, model.neck, model.rpn_head, model.roi_head.mask_head):
        assert not any(m.training for m in frozen.modules())
    head = model.roi_head.bbox_head
    assert head.training and head.fc_cls.training
    assert head.loss_cls.training  # parameterless modules follow the trainable parent
    assert not head.shared_fcs.training and not head.fc_reg.training
    model.eval()
    assert not any(m.training for m in model.modules())


def _fake_batch(model):
    """One 64x64 image with two boxes and their masks, through the model's data preprocessor."""
    torch.manual_seed(1)
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 8:30, 10:40] = 1
    masks[1, 35:60, 30:62] = 1
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[10.0, 8.0, 40.0, 30.0], [30.0, 35.0, 62.0, 60.0]]),
        labels=torch.tensor([0, 2]),
        masks=BitmapMasks(masks.numpy(), 64, 64),
    )
    data = dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)], data_samples=[sample])
    return model.data_preprocessor(data, training=True)


@pytest.mark.parametrize(
    ("trainable", "bbox_head"), [(CRT, {}), (LWS, dict(type="LWSBBoxHead"))], ids=["crt", "lws"]
)
def test_one_sgd_step_moves_only_the_trainable_parameters(model_cfg, trainable, bbox_head):
    model = build(model_cfg, trainable, **bbox_head)
    if bbox_head:  # scales at 1 give them the same gradient as W: make the step visible anyway
        nn.init.normal_(model.roi_head.bbox_head.fc_cls.weight, std=0.1)
    model.train()
    before = copy.deepcopy(model.state_dict())
    # every parameter goes to the optimizer, with weight decay: frozen ones must still not move
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    losses = model(**_fake_batch(model), mode="loss")
    total, _ = model.parse_losses(losses)  # what the runner sums
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == trainable_names(model)
    # BatchNorm statistics of the backbone: unchanged by a training-mode forward
    assert any(k.startswith("backbone.") and k.endswith("running_mean") for k in before)


@pytest.mark.parametrize(
    ("method", "trainable", "bbox_head", "missing"),
    [
        ("remove", CRT, {}, ["roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_cls.bias"]),
        ("reset", LWS, dict(type="LWSBBoxHead"), ["roi_head.bbox_head.fc_cls.scales"]),
    ],
    ids=["crt", "lws"],
)
def test_surgery_output_loads_into_the_decoupled_model(
    model_cfg, tmp_path, method, trainable, bbox_head, missing
):
    """The baseline -> ``eqlv2 surgery`` -> ``load_from`` chain: only the intended keys are missing."""
    baseline_cfg = copy.deepcopy(model_cfg)
    baseline_cfg.type = "MaskRCNN"
    del baseline_cfg.trainable
    baseline = MODELS.build(baseline_cfg)
    torch.save(
        {"meta": {"iter": 10}, "state_dict": baseline.state_dict(), "optimizer": {}}, tmp_path / "b.pth"
    )
    checkpoint = load_checkpoint(surgery(tmp_path / "b.pth", method, tmp_path))
    model = build(model_cfg, trainable, **bbox_head)
    result = model.load_state_dict(checkpoint["state_dict"], strict=False)
    assert result.missing_keys == missing and result.unexpected_keys == []
    if method == "reset":  # LWS starts exactly at the baseline: all weights loaded, scales at 1
        assert torch.equal(model.roi_head.bbox_head.fc_cls.weight, baseline.roi_head.bbox_head.fc_cls.weight)
        assert torch.equal(
            model.roi_head.bbox_head.fc_cls.scales, torch.ones_like(model.roi_head.bbox_head.fc_cls.scales)
        )
