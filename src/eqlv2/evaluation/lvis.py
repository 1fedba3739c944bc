"""LVIS v1 evaluation exactly as the ``lvis`` package computes it, plus the original's ARr/ARc/ARf.

AP and AR numbers come straight from ``LVISEval``; nothing is recomputed.  The original project used a
fork of the lvis-api whose only change to the maths was three extra lines: recall restricted to the
rare, common and frequent categories.  We compute them the fork's way from ``LVISEval.eval['recall']``:
the mean over IoU thresholds and the group's categories at area "all", leaving out categories without
ground truth (recall -1).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eqlv2.compat import import_lvis, numpy_float_alias

METRIC_KEYS = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf",
    "AR@300", "ARs@300", "ARm@300", "ARl@300", "ARr@300", "ARc@300", "ARf@300",
)  # fmt: skip
IOU_TYPES = ("bbox", "segm")
_LINE = " {title:<18} @[ IoU={iou:<9} | area={area:>6s} | maxDets={dets:>3d} catIds={cats:>3s}] = {value:.3f}"
_LAYOUT = {  # key -> (title, iou, area, cats)
    "AP": ("Average Precision  (AP)", "0.50:0.95", "all", "all"),
    "AP50": ("Average Precision  (AP)", "0.50", "all", "all"),
    "AP75": ("Average Precision  (AP)", "0.75", "all", "all"),
    "APs": ("Average Precision  (AP)", "0.50:0.95", "s", "all"),
    "APm": ("Average Precision  (AP)", "0.50:0.95", "m", "all"),
    "APl": ("Average Precision  (AP)", "0.50:0.95", "l", "all"),
    "APr": ("Average Precision  (AP)", "0.50:0.95", "all", "r"),
    "APc": ("Average Precision  (AP)", "0.50:0.95", "all", "c"),
    "APf": ("Average Precision  (AP)", "0.50:0.95", "all", "f"),
    "AR@300": ("Average Recall     (AR)", "0.50:0.95", "all", "all"),
    "ARs@300": ("Average Recall     (AR)", "0.50:0.95", "s", "all"),
    "ARm@300": ("Average Recall     (AR)", "0.50:0.95", "m", "all"),
    "ARl@300": ("Average Recall     (AR)", "0.50:0.95", "l", "all"),
    "ARr@300": ("Average Recall     (AR)", "0.50:0.95", "all", "r"),
    "ARc@300": ("Average Recall     (AR)", "0.50:0.95", "all", "c"),
    "ARf@300": ("Average Recall     (AR)", "0.50:0.95", "all", "f"),
}


def _group_recall(lvis_eval, group: str) -> float:
    """Mean recall of one frequency group, the tztztztztz/lvis-api fork's ARr/ARc/ARf."""
    groups = lvis_eval._prepare_freq_group()  # lists of category indices, in "r", "c", "f" order
    index = lvis_eval.params.img_count_lbl.index(group)
    area = lvis_eval.params.area_rng_lbl.index("all")
    recall = lvis_eval.eval["recall"][:, groups[index], area]
    valid = recall[recall > -1]
    return float(np.mean(valid)) if valid.size else -1.0


def load_results(path: str | Path) -> list[dict]:
    """Read a COCO-style result file, with a clear error when it is not one."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(results, list):
        raise ValueError(f"{path}: expected a JSON list of detections, got {type(results).__name__}")
    if not results:
        raise ValueError(f"{path}: holds no detections; LVIS evaluation needs at least one")
    for field in ("image_id", "category_id", "score"):
        if field not in results[0]:
            raise ValueError(f"{path}: a detection lacks the field '{field}'")
    return results


def evaluate_lvis(
    ann_file: str | Path, results_file: str | Path, iou_type: str, max_dets: int = 300
) -> dict[str, float]:
    """Evaluate a COCO-style result file against an LVIS-format annotation file.

    Returns the 16 metrics of the original's printout under the keys in ``METRIC_KEYS``.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    if not Path(ann_file).is_file():
        raise FileNotFoundError(f"annotation file {ann_file} does not exist")
    results = load_results(results_file)
    lvis = import_lvis()
    gt = lvis.LVIS(str(ann_file))
    dt = lvis.LVISResults(gt, results, max_dets=max_dets)
    lvis_eval = lvis.LVISEval(gt, dt, iou_type=iou_type)
    lvis_eval.params.max_dets = max_dets
    lvis_eval.evaluate()
    with numpy_float_alias():
        lvis_eval.accumulate()
    lvis_eval.summarize()
    metrics = {key: float(lvis_eval.results[key.replace("@300", f"@{max_dets}")]) for key in METRIC_KEYS[:13]}
    for group in "rcf":
        metrics[f"AR{group}@300"] = _group_recall(lvis_eval, group)
    return metrics


def format_metrics(metrics: dict[str, float], max_dets: int = 300) -> str:
    """The 16 lines the original printed after evaluation."""
    lines = []
    for key in METRIC_KEYS:
        title, iou, area, cats = _LAYOUT[key]
        lines.append(
            _LINE.format(title=title, iou=iou, area=area, dets=max_dets, cats=cats, value=metrics[key])
        )
    return "\n".join(lines)
