"""Per (image, category) IoU and greedy matching, exactly as ``LVISEval.evaluate`` does it, compiled.

The ``lvis`` package calls ``compute_iou`` and ``evaluate_img`` from Python for every image times every
category times every area range: 1000 images and 1203 categories make 4.8 million calls, most of them on
empty pairs.  Here only the (image, category) pairs that hold a detection or a ground-truth annotation are
visited, in two numba kernels, and the result is one true-positive and one false-positive flag per
detection, area range and IoU threshold: all that accumulation needs.

The rules reproduced from ``LVISEval.evaluate_img`` (``lvis`` 0.5.3):

* detections in descending score, ties in result-list order; ground truth of the area range first, the
  rest (``ignore`` set, or area outside the range) after it, each part in file order;
* a detection takes the unmatched annotation of highest IoU at or above the threshold (``min(t, 1 -
  1e-10)``), a later one on equal IoU; once it holds a regular annotation it stops at the first ignored one;
* a detection matched to an ignored annotation is ignored; an unmatched detection is ignored when its area
  is outside the range or its category is in the image's ``not_exhaustive_category_ids``;
* the match is recorded as the annotation's id, so an annotation with id 0 counts as no match.

Box IoU is pycocotools' ``bbIou`` operation for operation (float64), so thresholds see the same numbers;
mask IoU is exact pixel counts divided in float64, as pycocotools' ``rleIou`` (:mod:`eqlv2.evaluation.rle`);
boundary IoU (``iou_type="boundary"``, Boundary AP) is the smaller of the mask IoU and the IoU of the
masks' boundaries (:mod:`eqlv2.evaluation.boundary`), each mask's boundary computed once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from eqlv2.evaluation import boundary, rle
from eqlv2.evaluation.lvis_inputs import Detections, GroundTruth

# LVISEval.Params, computed the same way so that comparisons see the same float64 values.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = np.array([[0**2, 1e5**2], [0**2, 32**2], [32**2, 96**2], [96**2, 1e5**2]], np.float64)
AREA_LABELS = ("all", "small", "medium", "large")


@dataclass
class Matches:
    """Per-detection outcome of matching, detections in accumulation order.

    Accumulation order is ``LVISEval.accumulate``'s: by category, then descending score, then image
    (sorted ids), then result-list position.  ``tp[a, t, d]`` and ``fp[a, t, d]`` are detection ``d``'s
    flags at area range ``a`` and IoU threshold ``t`` (neither: ignored).
    """

    tp: np.ndarray  # (A, T, D) bool
    fp: np.ndarray  # (A, T, D) bool
    category_start: np.ndarray  # (K + 1,) detections of category k are [start[k], start[k + 1])
    image: np.ndarray  # (D,) image index
    score: np.ndarray  # (D,) float64, the detection's score (AP_pool ranks across categories by it)
    tie_block_start: np.ndarray  # (B + 1,) runs of equal (category, score, image), for resampling
    num_gt: np.ndarray  # (A, K) int64, regular annotations of each category and area range
    gt_image: np.ndarray  # (G,) image index of each kept annotation
    gt_category: np.ndarray  # (G,) category index
    gt_regular_all: np.ndarray  # (G,) bool: counted at area "all" (not ignored)


@numba.njit(cache=True, nogil=True)
def _box_ious(dt_box, gt_box, dt_start, dt_end, gt_start, gt_end, iou_start, ious):  # pragma: no cover
    """pycocotools ``bbIou`` (iscrowd 0) for every pair, dt-major within a pair."""
    for p in range(len(dt_start)):
        nd = dt_end[p] - dt_start[p]
        ng = gt_end[p] - gt_start[p]
        for i in range(nd):
            d = dt_start[p] + i
            da = dt_box[d, 2] * dt_box[d, 3]
            for j in range(ng):
                g = gt_start[p] + j
                ga = gt_box[g, 2] * gt_box[g, 3]
                out = iou_start[p] + i * ng + j
                ious[out] = 0.0
                w = min(dt_box[d, 2] + dt_box[d, 0], gt_box[g, 2] + gt_box[g, 0]) - max(
                    dt_box[d, 0], gt_box[g, 0]
                )
                if w <= 0:
                    continue
                h = min(dt_box[d, 3] + dt_box[d, 1], gt_box[g, 3] + gt_box[g, 1]) - max(
                    dt_box[d, 1], gt_box[g, 1]
                )
                if h <= 0:
                    continue
                inter = w * h
                ious[out] = inter / (da + ga - inter)


@numba.njit(cache=True, nogil=True, parallel=True)
def _greedy_match(
    dt_start, dt_end, gt_start, gt_end, iou_start, ious,
    gt_area, gt_ignore, gt_id_nonzero, dt_area, dt_not_exhaustive, area_ranges, iou_thresholds,
):  # pragma: no cover  # fmt: skip
    """``evaluate_img`` for every pair and area range: tp/fp flags of each detection (pair order).

    Pairs are independent and each writes only its own detections' flags: both cores.
    """
    num_areas, num_thrs, num_dts = len(area_ranges), len(iou_thresholds), len(dt_area)
    tp = np.zeros((num_areas, num_thrs, num_dts), np.bool_)
    fp = np.zeros((num_areas, num_thrs, num_dts), np.bool_)
    for p in numba.prange(len(dt_start)):
        nd = dt_end[p] - dt_start[p]
        ng = gt_end[p] - gt_start[p]
        if nd == 0:
            continue
        order = np.empty(ng, np.int64)
        ignored = np.empty(ng, np.bool_)
        taken = np.empty(ng, np.bool_)
        for a in range(num_areas):
            low, high = area_ranges[a, 0], area_ranges[a, 1]
            n = 0
            for second_pass in (False, True):  # regular annotations first, then ignored, each in file order
                for j in range(ng):
                    g = gt_start[p] + j
                    ig = gt_ignore[g] or gt_area[g] < low or gt_area[g] > high
                    if ig == second_pass:
                        order[n] = j
                        ignored[n] = ig
                        n += 1
            for t in range(num_thrs):
                taken[:] = False
                for i in range(nd):
                    d = dt_start[p] + i
                    best = min(iou_thresholds[t], 1 - 1e-10)
                    m = -1
                    for k in range(ng):
                        if taken[k]:
                            continue
                        if m > -1 and not ignored[m] and ignored[k]:
                            break
                        iou = ious[iou_start[p] + i * ng + order[k]]
                        if iou < best:
                            continue
                        best = iou
                        m = k
                    matched = False
                    ignore = False
                    if m > -1:
                        taken[m] = True
                        ignore = ignored[m]
                        matched = gt_id_nonzero[gt_start[p] + order[m]]
                    if not matched:
                        outside = dt_area[d] < low or dt_area[d] > high
                        ignore = ignore or outside or dt_not_exhaustive[d]
                    tp[a, t, d] = matched and not ignore
                    fp[a, t, d] = not matched and not ignore
    return tp, fp


def _pairs(dt_keys: np.ndarray, gt_keys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Ranges of the (sorted) detection and annotation keys of each pair that holds either."""
    keys = np.union1d(dt_keys, gt_keys)
    dt_start = np.searchsorted(dt_keys, keys, "left")
    dt_end = np.searchsorted(dt_keys, keys, "right")
    gt_start = np.searchsorted(gt_keys, keys, "left")
    gt_end = np.searchsorted(gt_keys, keys, "right")
    return dt_start, dt_end, gt_start, gt_end


def _mask_ious(dts: Detections, dt_order, gt: GroundTruth, gt_order, ranges, iou_start, total) -> np.ndarray:
    """Mask IoU for every pair holding both, in the buffer layout of ``_box_ious`` (pycocotools' values)."""
    dt_start, dt_end, gt_start, gt_end = ranges
    ious = np.zeros(total, np.float64)
    rle.pair_ious(
        dts.mask_text, dts.mask_begin, dts.mask_end, dts.mask_escaped, dt_order.astype(np.int64),
        gt.ann_mask_text, gt.ann_mask_begin[gt_order], gt.ann_mask_end[gt_order],
        dt_start, dt_end, gt_start, gt_end, iou_start, ious,
    )  # fmt: skip
    return ious


def _min_with_boundary_ious(
    dts: Detections, dt_order, gt: GroundTruth, gt_order, ranges, iou_start, ious
) -> None:
    """Mask IoUs lowered to the boundary IoU where that is smaller (Cheng et al.'s Boundary AP).

    Every annotation's boundary once; a detection's only where its pair holds ground truth (the others
    are never compared, and an empty string gives an empty boundary at no cost).
    """
    dt_start, dt_end, gt_start, gt_end = ranges
    gt_runs, gt_runs_start = boundary.mask_boundaries(
        gt.ann_mask_text, gt.ann_mask_begin[gt_order], gt.ann_mask_end[gt_order], False,
        gt.image_sizes[gt.ann_image[gt_order]],
    )  # fmt: skip
    compared = np.zeros(len(dt_order) + 1, np.int64)
    np.add.at(compared, dt_start[gt_end > gt_start], 1)
    np.add.at(compared, dt_end[gt_end > gt_start], -1)
    compared = np.cumsum(compared[:-1]) > 0
    begin = dts.mask_begin[dt_order]
    end = np.where(compared, dts.mask_end[dt_order], begin)
    dt_runs, dt_runs_start = boundary.mask_boundaries(
        dts.mask_text, begin, end, dts.mask_escaped, gt.image_sizes[dts.image[dt_order]]
    )
    boundary.min_with_boundary_ious(
        dt_runs, dt_runs_start, gt_runs, gt_runs_start, dt_start, dt_end, gt_start, gt_end, iou_start, ious
    )


def match(gt: GroundTruth, dts: Detections, iou_type: str) -> Matches:
    """Match every detection as ``LVISEval.evaluate`` does and return the flags in accumulation order."""
    num_images = len(gt.image_ids)
    dt_keys = dts.category * num_images + dts.image
    gt_keys = gt.ann_category * num_images + gt.ann_image
    dt_order = np.lexsort((dts.position, -dts.score, dt_keys))  # pair, then score, then list order
    gt_order = np.argsort(gt_keys, kind="stable")  # pair, then file order
    ranges = _pairs(dt_keys[dt_order], gt_keys[gt_order])
    dt_start, dt_end, gt_start, gt_end = ranges
    sizes = (dt_end - dt_start) * (gt_end - gt_start)
    iou_start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    total = int(sizes.sum())
    if iou_type == "bbox":
        ious = np.zeros(total, np.float64)
        _box_ious(
            dts.bbox[dt_order], gt.ann_bbox[gt_order], dt_start, dt_end, gt_start, gt_end, iou_start, ious
        )
    else:
        ious = _mask_ious(dts, dt_order, gt, gt_order, ranges, iou_start, total)
        if iou_type == "boundary":
            _min_with_boundary_ious(dts, dt_order, gt, gt_order, ranges, iou_start, ious)
    tp, fp = _greedy_match(
        dt_start, dt_end, gt_start, gt_end, iou_start, ious,
        gt.ann_area[gt_order], gt.ann_ignore[gt_order], gt.ann_id_nonzero[gt_order],
        dts.area[dt_order], dts.not_exhaustive[dt_order], AREA_RANGES, IOU_THRESHOLDS,
    )  # fmt: skip

    # From pair order to accumulation order: category, descending score, image, list position.
    in_pair = np.empty(len(dt_order), np.int64)
    in_pair[dt_order] = np.arange(len(dt_order))
    acc = np.lexsort((dts.position, dts.image, -dts.score, dts.category))
    category, score, image = dts.category[acc], dts.score[acc], dts.image[acc]
    num_cats = gt.num_categories
    new_block = np.ones(len(acc), bool)
    new_block[1:] = (category[1:] != category[:-1]) | (score[1:] != score[:-1]) | (image[1:] != image[:-1])

    regular = ~gt.ann_ignore[None, :] & (gt.ann_area[None, :] >= AREA_RANGES[:, :1])
    regular &= gt.ann_area[None, :] <= AREA_RANGES[:, 1:]
    num_gt = np.stack([np.bincount(gt.ann_category[r], minlength=num_cats) for r in regular])
    return Matches(
        tp=tp[:, :, in_pair[acc]],
        fp=fp[:, :, in_pair[acc]],
        category_start=np.searchsorted(category, np.arange(num_cats + 1)),
        image=image,
        score=score,
        tie_block_start=np.append(np.flatnonzero(new_block), len(acc)),
        num_gt=num_gt.astype(np.int64),
        gt_image=gt.ann_image,
        gt_category=gt.ann_category,
        gt_regular_all=regular[0],
    )
