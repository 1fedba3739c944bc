"""LVIS v1 evaluation exactly as the ``lvis`` package computes it, plus the original's ARr/ARc/ARf.

Two backends give the same numbers (within 1e-9; ``tests/test_lvis_parity.py``):

* ``fast`` (the default): this package's own implementation of the ``lvis`` 0.5.3 protocol
  (:mod:`~eqlv2.evaluation.lvis_inputs`, :mod:`~eqlv2.evaluation.lvis_matching`,
  :mod:`~eqlv2.evaluation.lvis_scoring`), tens of times faster, and the one that can bootstrap;
* ``lvis``: the ``lvis`` package's ``LVISEval`` itself, the reference.

The original project used a fork of the lvis-api whose only change to the maths was three extra lines:
recall restricted to the rare, common and frequent categories.  Both backends compute them the fork's
way: the mean recall over IoU thresholds and the group's categories at area "all", leaving out categories
without ground truth (recall -1).  AR keys name the detection limit used (``AR@300`` by default).

Protocols (``protocol``):

* ``standard``: the LVIS protocol, at most ``max_dets`` detections per image (300);
* ``fixed``: AP_fixed of Dave et al. 2021 ("Evaluating Large-Vocabulary Object Detectors: The Devil is in
  the Details"): each category's ``dets_per_class`` best detections over the whole split (10,000; ties in
  file order) and no per-image cap, then the same protocol; the numbers of their
  ``scripts/evaluate_ap_fixed.py`` (``LVISResults(max_dets=-1)``, ``params.max_dets = -1``).  The
  ``lvis`` package names its AR keys ``AR@-1`` then; here they name the limit per category,
  ``AR@10000perclass`` (``ARr@10000perclass``, ...), so that a table never mixes them up with ``AR@300``;
* ``pooled``: AP_pool of Dave et al. 2021, which measures calibration: the fixed protocol's selection and
  per-category matching, then one ranking of all detections of a pool of categories (every category; the
  r, c and f groups) by score, scored as one category at area "all": ``AP_pool``, ``APr_pool``,
  ``APc_pool``, ``APf_pool`` (the numbers their ``scripts/evaluate_ap_pooled.py`` reports as
  ``AP-pooled-all/r/c/f`` with ``--dets-per-cat``).

``iou_type="boundary"`` is Boundary AP (Cheng et al. 2021, the LVIS Challenge 2021's metric): the segm
evaluation with IoU = min(mask IoU, boundary IoU), under either protocol (:mod:`~eqlv2.evaluation.boundary`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from eqlv2.compat import import_lvis, numpy_float_alias
from eqlv2.evaluation.lvis_inputs import (
    FREQUENCIES,
    GroundTruth,
    load_detections,
    load_ground_truth,
    read_json,
    read_results,
)
from eqlv2.evaluation.lvis_intervals import INTERVALS, confidence_intervals
from eqlv2.evaluation.lvis_matching import Matches, match
from eqlv2.evaluation.lvis_scoring import (
    POOLED_KEYS,
    accumulate,
    per_class_ap,
    pooled_ap,
    pooled_curve_ap,
    summarize,
)

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
AR_KEYS = ("AR", "ARs", "ARm", "ARl", "ARr", "ARc", "ARf")
IOU_TYPES = ("bbox", "segm")  # what mmdet's models give and the mmengine metric reads
EVALUATION_IOU_TYPES = (*IOU_TYPES, "boundary")  # boundary: the segm results scored by Boundary IoU
BACKENDS = ("fast", "lvis")
PROTOCOLS = ("standard", "fixed", "pooled")
DETS_PER_CLASS = 10_000  # Dave et al.'s K, also the LVIS Challenge 2021's


def metric_keys(max_dets: int | str = 300) -> tuple[str, ...]:
    """The 16 metric names, AR keys carrying the detection limit (``AR@300``, see :func:`limit_label`)."""
    return AP_KEYS + tuple(f"{key}@{max_dets}" for key in AR_KEYS)


def limit_label(protocol: str, max_dets: int = 300, dets_per_class: int = DETS_PER_CLASS) -> int | str:
    """What AR keys and the printout name as the limit: ``300`` (per image) or ``"10000perclass"``."""
    return max_dets if protocol == "standard" else f"{dets_per_class}perclass"


METRIC_KEYS = metric_keys(300)
_LINE = " {title:<18} @[ IoU={iou:<9} | area={area:>6s} | maxDets={dets:>3} catIds={cats:>3s}] = {value:.3f}"
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
    results = read_json(path, "result file")
    if not isinstance(results, list):
        raise ValueError(f"{path}: expected a JSON list of detections, got {type(results).__name__}")
    if not results:
        raise ValueError(f"{path}: holds no detections; LVIS evaluation needs at least one")
    for field in ("image_id", "category_id", "score"):
        if field not in results[0]:
            raise ValueError(f"{path}: a detection lacks the field '{field}'")
    return results


def evaluate_lvis(
    ann_file: str | Path,
    results_file: str | Path,
    iou_type: str,
    max_dets: int = 300,
    backend: str = "fast",
    bootstrap: int = 0,
    seed: int = 0,
    per_class: bool = False,
    protocol: str = "standard",
    dets_per_class: int = DETS_PER_CLASS,
    interval: str = INTERVALS[0],
) -> dict:
    """Evaluate a COCO-style result file against an LVIS-format annotation file.

    Returns the 16 metrics of the original's printout under the keys of ``metric_keys(limit_label(...))``
    (``max_dets`` per image under the standard protocol, ``dets_per_class`` per category under fixed); with
    ``bootstrap`` > 0 also ``AP_ci95``, ``APr_ci95``, ``APc_ci95`` and ``APf_ci95``: 95% intervals from
    that many resamples of the images by the ``interval`` method (:mod:`~eqlv2.evaluation.lvis_intervals`;
    fast backend only; deterministic for a seed); with
    ``per_class``, under ``per_class``, one row per category: its id, name, frequency group, training
    image and instance counts (from the annotation file's categories) and AP (-1: no ground truth).
    """
    if iou_type not in EVALUATION_IOU_TYPES:
        raise ValueError(f"iou_type must be one of {EVALUATION_IOU_TYPES}, got {iou_type!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if max_dets < 1:
        raise ValueError(f"max_dets must be at least 1, got {max_dets}")
    if dets_per_class < 1:
        raise ValueError(f"dets_per_class must be at least 1, got {dets_per_class}")
    per_category = None if protocol == "standard" else dets_per_class
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be 0 (off) or a number of resamples, got {bootstrap}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")
    if protocol == "pooled" and bootstrap:
        raise ValueError(
            "bootstrap intervals are not available under the pooled protocol: the resampling re-accumulates "
            "per category, and AP_pool ranks across categories"
        )
    if protocol == "pooled" and per_class:
        raise ValueError(
            "per-class AP is not defined under the pooled protocol: AP_pool ranks across categories"
        )
    if backend == "fast":
        if protocol == "pooled":
            gt, matches = match_lvis(ann_file, results_file, iou_type, max_dets, per_category)
            return pooled_ap(matches, gt.frequency_groups())
        return _evaluate_fast(
            ann_file, results_file, iou_type, max_dets, bootstrap, seed, per_class, interval, per_category
        )
    if bootstrap:
        raise ValueError("bootstrap intervals need the fast backend (--backend fast)")
    if iou_type == "boundary":
        raise ValueError("the lvis package has no boundary IoU; Boundary AP needs the fast backend")
    return _evaluate_reference(
        ann_file, results_file, iou_type, max_dets, per_class, per_category, protocol == "pooled"
    )


def match_lvis(
    ann_file: str | Path,
    results_file: str | Path,
    iou_type: str,
    max_dets: int = 300,
    dets_per_class: int | None = None,
) -> tuple[GroundTruth, Matches]:
    """Read and match once: what every evaluation of these files, resampled or not, starts from.

    The result file is read in a second thread while this one reads the ground truth: its scanner is
    compiled code that releases the GIL, and the ground truth's side is Python and pycocotools (the
    annotations' polygons to RLE), so on two cores the two reads cost about the longer of them.  An
    error in the annotation file is the one reported when both files are bad.  ``dets_per_class``: the
    fixed protocol's selection instead of the per-image cap.
    """
    with ThreadPoolExecutor(max_workers=1) as reader:
        results = reader.submit(read_results, Path(results_file))
        gt = load_ground_truth(ann_file, iou_type)
        detections = load_detections(results_file, gt, iou_type, max_dets, results.result(), dets_per_class)
    return gt, match(gt, detections, iou_type)


def _evaluate_fast(
    ann_file, results_file, iou_type, max_dets, bootstrap, seed, per_class, interval, dets_per_class
) -> dict:
    gt, matches = match_lvis(ann_file, results_file, iou_type, max_dets, dets_per_class)
    precision, recall = accumulate(matches)
    groups = gt.frequency_groups()
    protocol = "standard" if dets_per_class is None else "fixed"
    metrics: dict = summarize(precision, recall, groups, limit_label(protocol, max_dets, dets_per_class))
    if bootstrap:
        metrics.update(confidence_intervals(matches, groups, len(gt.image_ids), bootstrap, seed, interval))
    if per_class:
        categories = zip(gt.category_ids, gt.category_names, gt.frequency, gt.category_counts, strict=True)
        metrics["per_class"] = [
            _class_row(category, name, FREQUENCIES[frequency], counts, ap)
            for (category, name, frequency, counts), ap in zip(
                categories, per_class_ap(precision), strict=True
            )
        ]
    return metrics


def _class_row(category_id, name, frequency, counts, ap) -> dict:
    image_count, instance_count = (int(v) for v in counts)
    return {"category_id": int(category_id), "name": name, "frequency": frequency,
            "image_count": image_count, "instance_count": instance_count, "AP": float(ap)}  # fmt: skip


def _evaluate_reference(
    ann_file, results_file, iou_type, max_dets, per_class=False, dets_per_class=None, pooled=False
) -> dict:
    """``LVISEval`` itself, as a user of the ``lvis`` package would call it; under the fixed protocol
    (``dets_per_class``) as Dave et al.'s ``scripts/evaluate_ap_fixed.py`` calls it; ``pooled``: AP_pool
    from ``LVISEval.evaluate``'s per-image results (:func:`_reference_pooled_ap`)."""
    if not Path(ann_file).is_file():
        raise FileNotFoundError(f"annotation file {ann_file} does not exist")
    results = load_results(results_file)
    label = max_dets
    if dets_per_class is not None:
        by_category: dict = {}
        for det in results:
            by_category.setdefault(det["category_id"], []).append(det)
        results = [
            det
            for dets in by_category.values()
            for det in sorted(dets, key=lambda d: d["score"], reverse=True)[:dets_per_class]
        ]
        max_dets, label = -1, limit_label("fixed", dets_per_class=dets_per_class)  # no limit per image
    lvis = import_lvis()
    gt = lvis.LVIS(str(ann_file))
    dt = lvis.LVISResults(gt, results, max_dets=max_dets)
    lvis_eval = lvis.LVISEval(gt, dt, iou_type=iou_type)
    lvis_eval.params.max_dets = max_dets
    lvis_eval.evaluate()
    if pooled:
        return _reference_pooled_ap(lvis_eval)
    with numpy_float_alias():
        lvis_eval.accumulate()
    lvis_eval.summarize()
    keys = metric_keys(label)
    theirs = metric_keys(max_dets)  # the lvis package's names: AR@-1 under the fixed protocol
    metrics = {key: float(lvis_eval.results[their]) for key, their in zip(keys[:13], theirs, strict=False)}
    for group, key in zip("rcf", keys[13:], strict=True):
        metrics[key] = _group_recall(lvis_eval, group)
    if per_class:
        aps = per_class_ap(lvis_eval.eval["precision"])
        cats = [gt.cats[c] for c in lvis_eval.params.cat_ids]
        metrics["per_class"] = [
            _class_row(c["id"], c.get("name", ""), c["frequency"], (c.get("image_count", -1),
                       c.get("instance_count", -1)), ap)
            for c, ap in zip(cats, aps, strict=True)
        ]  # fmt: skip
    return metrics


def _reference_pooled_ap(lvis_eval) -> dict:
    """AP_pool over ``LVISEval.evaluate``'s results: for each pool, the ``evaluate_img`` entries of area
    "all" listed image by image, category by category within an image, concatenated and stably sorted
    by descending score, as Dave et al.'s ``LVISPooledEval.accumulate`` ranks them."""
    params = lvis_eval.params
    num_images, num_areas = len(params.img_ids), len(params.area_rng)
    groups = lvis_eval._prepare_freq_group()
    pools = [list(range(len(params.cat_ids))), *(groups[params.img_count_lbl.index(g)] for g in "rcf")]
    metrics = {}
    for key, pool in zip(POOLED_KEYS, pools, strict=True):
        entries = [
            lvis_eval.eval_imgs[c * num_areas * num_images + i] for i in range(num_images) for c in pool
        ]
        entries = [e for e in entries if e is not None]
        if not entries:
            metrics[key] = -1.0
            continue
        order = np.argsort(-np.concatenate([e["dt_scores"] for e in entries]), kind="mergesort")
        # dt_matches holds annotation ids: 0 is no match, as LVISEval.accumulate reads it
        matched = np.concatenate([e["dt_matches"] for e in entries], axis=1)[:, order] != 0
        ignored = np.concatenate([e["dt_ignore"] for e in entries], axis=1)[:, order].astype(bool)
        num_gt = int(np.count_nonzero(np.concatenate([e["gt_ignore"] for e in entries]) == 0))
        metrics[key] = pooled_curve_ap(matched & ~ignored, ~matched & ~ignored, num_gt)
    return metrics


def format_metrics(metrics: dict, max_dets: int | str = 300) -> str:
    """The 16 lines the original printed after evaluation, then any bootstrap intervals; under the
    pooled protocol (``AP_pool`` present) its four lines instead."""
    if "AP_pool" in metrics:
        return "\n".join(
            _LINE.format(title="Pooled AP     (AP_pool)", iou="0.50:0.95", area="all", dets=max_dets,
                         cats=cats, value=metrics[key])
            for key, cats in zip(POOLED_KEYS, ("all", "r", "c", "f"), strict=True)
        )  # fmt: skip
    lines = []
    for layout_key, key in zip(METRIC_KEYS, metric_keys(max_dets), strict=True):
        title, iou, area, cats = _LAYOUT[layout_key]
        lines.append(
            _LINE.format(title=title, iou=iou, area=area, dets=max_dets, cats=cats, value=metrics[key])
        )
    for key, value in metrics.items():
        if key.endswith("_ci95"):
            lines.append(f" 95% bootstrap interval of {key[:-5]:<4} = [{value[0]:.3f}, {value[1]:.3f}]")
    return "\n".join(lines)
