"""``ExactLVISMetric``: the fast, exact LVIS evaluator as an mmengine metric, for validation during training.

mmdet's ``LVISMetric`` runs the ``lvis`` package, which on LVIS v1 val costs a quarter of an hour per
evaluation, so LVIS configs usually train without validation.  This metric gives the same numbers (it
writes the predictions as mmdet's ``results2json`` does and evaluates them with
:func:`eqlv2.evaluation.lvis.evaluate_lvis`) in seconds, and optionally the bootstrap intervals:

    val_evaluator = dict(type='ExactLVISMetric', ann_file=data_root + 'annotations/lvis_v1_val.json',
                         metric=['bbox', 'segm'])

Keys are ``<iou_type>_<metric>`` (``bbox_AP``, ``segm_APr``, ``segm_AR@300``); with ``bootstrap`` > 0 also
``segm_APr_ci95_low`` / ``_high`` (scalars, which mmengine's loggers can record).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson
from mmdet.registry import METRICS
from mmdet.structures.mask import encode_mask_results
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from eqlv2.evaluation.lvis import IOU_TYPES, evaluate_lvis
from eqlv2.evaluation.lvis_inputs import read_json


def _xywh(box: np.ndarray) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


@METRICS.register_module()
class ExactLVISMetric(BaseMetric):
    """LVIS v1 bbox/segm metrics by the ``lvis`` package's protocol, computed by this package.

    Args:
        ann_file: The LVIS-format annotation file of the evaluated split.
        metric: ``'bbox'``, ``'segm'`` or both.
        max_dets: Detections kept per image (LVIS: 300).
        bootstrap: Resamples for 95% intervals of AP, APr, APc, APf (0: none).
        bootstrap_seed: Seed of the resamples.
    """

    default_prefix = "lvis"

    def __init__(
        self,
        ann_file: str,
        metric: str | Sequence[str] = "bbox",
        max_dets: int = 300,
        bootstrap: int = 0,
        bootstrap_seed: int = 0,
        collect_device: str = "cpu",
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.metrics = [metric] if isinstance(metric, str) else list(metric)
        for name in self.metrics:
            if name not in IOU_TYPES:
                raise ValueError(f"ExactLVISMetric: metric must be 'bbox' or 'segm', got {name!r}")
        self.ann_file = ann_file
        self.max_dets, self.bootstrap, self.bootstrap_seed = max_dets, bootstrap, bootstrap_seed
        # mmdet's LVIS datasets number labels in the order the file lists its categories.
        self.cat_ids = [c["id"] for c in read_json(ann_file, "annotation file")["categories"]]

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample["pred_instances"]
            result = {
                "img_id": sample["img_id"],
                "bboxes": pred["bboxes"].cpu().numpy(),
                "scores": pred["scores"].cpu().numpy(),
                "labels": pred["labels"].cpu().numpy(),
            }
            if "masks" in pred:
                result["masks"] = encode_mask_results(pred["masks"].detach().cpu().numpy())
            if "mask_scores" in pred:
                result["mask_scores"] = pred["mask_scores"].cpu().numpy()
            self.results.append(result)

    def _detections(self, results: list[dict], iou_type: str) -> list[dict]:
        """The COCO-style result list mmdet's ``results2json`` writes for ``iou_type``."""
        dets = []
        for result in results:
            scores = result.get("mask_scores", result["scores"]) if iou_type == "segm" else result["scores"]
            for i, label in enumerate(result["labels"]):
                det = {"image_id": result["img_id"], "bbox": _xywh(result["bboxes"][i]),
                       "score": float(scores[i]), "category_id": self.cat_ids[label]}  # fmt: skip
                if iou_type == "segm":
                    mask = result["masks"][i]
                    counts = mask["counts"]
                    det["segmentation"] = {
                        "size": mask["size"],
                        "counts": counts.decode() if isinstance(counts, bytes) else counts,
                    }
                dets.append(det)
        return dets

    def compute_metrics(self, results: list) -> dict[str, float]:
        metrics: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for iou_type in self.metrics:
                dets = self._detections(results, iou_type)
                if not dets:
                    print_log(f"ExactLVISMetric: no detections to evaluate as {iou_type}", logger="current")
                    continue
                path = Path(tmp) / f"{iou_type}.json"
                path.write_bytes(orjson.dumps(dets))
                values = evaluate_lvis(
                    self.ann_file,
                    path,
                    iou_type,
                    self.max_dets,
                    bootstrap=self.bootstrap,
                    seed=self.bootstrap_seed,
                )
                for key, value in values.items():
                    if key.endswith("_ci95"):
                        metrics[f"{iou_type}_{key}_low"], metrics[f"{iou_type}_{key}_high"] = value
                    else:
                        metrics[f"{iou_type}_{key}"] = value
        return metrics
