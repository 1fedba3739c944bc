"""``ExactLVISMetric`` gives, during training, the numbers mmdet's ``LVISMetric`` (the lvis package) gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmdet.evaluation.metrics import LVISMetric
from mmengine.registry import init_default_scope
from pycocotools import mask as mask_utils

from eqlv2.compat import numpy_float_alias
from eqlv2.evaluation.metric import ExactLVISMetric
from tests.lvis_cases import CaseSize, make_case, write_case


def _data_samples(gt: dict, results: list[dict]) -> list[dict]:
    """What a Mask R-CNN's test step hands the evaluator: xyxy boxes, label indices, binary masks."""
    label = {c["id"]: k for k, c in enumerate(gt["categories"])}  # mmdet's order: the file's
    samples = []
    for image in gt["images"]:
        dets = [d for d in results if d["image_id"] == image["id"]]
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in dets)]
        masks = [mask_utils.decode({"size": d["segmentation"]["size"], "counts": d["segmentation"]["counts"]})
                 for d in dets]  # fmt: skip
        samples.append({
            "img_id": image["id"], "ori_shape": (image["height"], image["width"]),
            "pred_instances": {
                "bboxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float32),
                "labels": torch.tensor([label[d["category_id"]] for d in dets], dtype=torch.long),
                "masks": torch.from_numpy(np.array(masks, bool).reshape(-1, image["height"], image["width"])),
            },
        })  # fmt: skip
    return samples


def test_exact_metric_equals_mmdets_lvis_metric(tmp_path):
    init_default_scope("mmdet")
    gt, results = make_case(9, CaseSize(images=12, categories=15, dets_per_image=25))
    gt_path, _ = write_case(tmp_path, gt, results)
    samples = _data_samples(gt, results)
    ours = ExactLVISMetric(ann_file=str(gt_path), metric=["bbox", "segm"])
    reference = LVISMetric(ann_file=str(gt_path), metric=["bbox", "segm"])
    for metric in (ours, reference):
        metric.process({}, samples)
    values = ours.compute_metrics(ours.results)
    with numpy_float_alias():
        expected = reference.compute_metrics(reference.results)  # rounded to 3 decimals by mmdet
    compared = [key for key in expected if key in values]
    assert {"bbox_APr", "segm_APr", "segm_AP", "bbox_APf"} <= set(compared) and len(compared) == 18, compared
    for key in compared:
        assert values[key] == pytest.approx(expected[key], abs=5e-4 + 1e-12), key


def test_bootstrap_intervals_are_scalars_for_the_loggers(tmp_path):
    init_default_scope("mmdet")
    gt, results = make_case(10, CaseSize(images=12, categories=15, dets_per_image=25))
    gt_path, _ = write_case(tmp_path, gt, results)
    metric = ExactLVISMetric(ann_file=str(gt_path), metric="segm", bootstrap=20)
    metric.process({}, _data_samples(gt, results))
    values = metric.compute_metrics(metric.results)
    assert values["segm_AP_ci95_low"] <= values["segm_AP_ci95_high"]
    assert all(isinstance(v, float) for v in values.values())


def test_a_metric_other_than_bbox_or_segm_is_refused(tmp_path):
    gt, results = make_case(0, CaseSize(images=3, categories=5))
    gt_path, _ = write_case(tmp_path, gt, results)
    with pytest.raises(ValueError, match="'bbox' or 'segm'"):
        ExactLVISMetric(ann_file=str(gt_path), metric="proposal")
