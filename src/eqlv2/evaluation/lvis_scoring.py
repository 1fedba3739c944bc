"""From matches to LVIS's 16 numbers, as ``LVISEval.accumulate`` and ``summarize`` compute them; bootstrap.

Accumulation per category and area range, reproduced from ``lvis`` 0.5.3: cumulative true and false
positives over the category's detections (already in accumulation order), recall ``tp / num_gt``,
precision ``tp / (fp + tp + eps)`` made non-increasing from the right, then read at the 101 recall
thresholds (first detection whose recall reaches the threshold; 0 past the last one).  A category without
regular ground truth in the range scores -1 and is left out of every mean.

The resampled evaluations (:mod:`~eqlv2.evaluation.lvis_intervals` turns them into intervals) reweight
the validation images and evaluate each resample by the same protocol, as if the drawn images were a
dataset of their own (an image drawn k times counts as k images with the same annotations and
detections; weight 0 leaves it out).  Matching does not depend on the resample, so it is done once; only
the accumulation is redone, with each image's detections repeated k times in the order the ``lvis``
package would give the copies (copies of one image are adjacent, their equal-score detections interleave
copy by copy).
"""

from __future__ import annotations

import numba
import numpy as np

from eqlv2.evaluation.lvis_matching import AREA_LABELS, IOU_THRESHOLDS, RECALL_THRESHOLDS, Matches

EPS = np.spacing(1)
BOOTSTRAP_KEYS = ("AP", "APr", "APc", "APf")
POOLED_KEYS = ("AP_pool", "APr_pool", "APc_pool", "APf_pool")  # pools: every category, then r, c, f


@numba.njit(cache=True, nogil=True)
def _precision_at_recall(tp_row, fp_row, start, end, num_gt, recall_thresholds, pr, out):  # pragma: no cover
    """Precision at each recall threshold and the final recall of one category, area and threshold."""
    n = end - start
    tp = 0.0
    fp = 0.0
    for i in range(n):
        if tp_row[start + i]:
            tp += 1.0
        if fp_row[start + i]:
            fp += 1.0
        pr[i] = tp / (fp + tp + EPS)
    for i in range(n - 1, 0, -1):
        if pr[i] > pr[i - 1]:
            pr[i - 1] = pr[i]
    # searchsorted(rc, thresholds, "left") with rc = cumulative tp / num_gt, walked once.
    i = 0
    tp = 1.0 if n and tp_row[start] else 0.0
    for r in range(len(recall_thresholds)):
        while i < n and tp / num_gt < recall_thresholds[r]:
            i += 1
            if i < n and tp_row[start + i]:
                tp += 1.0
        out[r] = pr[i] if i < n else 0.0


@numba.njit(cache=True, nogil=True, parallel=True)
def _accumulate(tp, fp, category_start, num_gt, recall_thresholds):  # pragma: no cover
    """Categories are independent and write their own slices: both cores."""
    num_areas, num_thrs = tp.shape[0], tp.shape[1]
    num_cats = len(category_start) - 1
    precision = -np.ones((num_thrs, len(recall_thresholds), num_cats, num_areas))
    recall = -np.ones((num_thrs, num_cats, num_areas))
    for k in numba.prange(num_cats):
        start, end = category_start[k], category_start[k + 1]
        pr = np.empty(end - start + 1)
        out = np.empty(len(recall_thresholds))
        for a in range(num_areas):
            if num_gt[a, k] == 0:
                continue
            for t in range(num_thrs):
                _precision_at_recall(
                    tp[a, t], fp[a, t], start, end, float(num_gt[a, k]), recall_thresholds, pr, out
                )
                precision[t, :, k, a] = out
                final_tp = 0.0
                for i in range(start, end):
                    if tp[a, t, i]:
                        final_tp += 1.0
                recall[t, k, a] = final_tp / num_gt[a, k] if end > start else 0.0
    return precision, recall


def accumulate(matches: Matches) -> tuple[np.ndarray, np.ndarray]:
    """``LVISEval.eval['precision']`` (T, R, K, A) and ``['recall']`` (T, K, A)."""
    return _accumulate(matches.tp, matches.fp, matches.category_start, matches.num_gt, RECALL_THRESHOLDS)


def per_class_ap(precision: np.ndarray) -> np.ndarray:
    """Each category's AP at area "all" (mean precision over IoU thresholds and recall points); -1 where
    it has no ground truth, as in ``LVISEval``'s precision array."""
    per_class = precision[:, :, :, 0]
    valid = per_class > -1
    sums = np.where(valid, per_class, 0.0).sum(axis=(0, 1))
    counts = valid.sum(axis=(0, 1))
    return np.where(counts > 0, sums / np.maximum(counts, 1), -1.0)


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else -1.0


@numba.njit(cache=True, nogil=True)
def _gather_valid_precision(precision, thresholds, categories, area, out):  # pragma: no cover
    """The entries > -1 of ``precision[thresholds][:, :, categories, area]`` into ``out``, in numpy's
    order (threshold, recall point, category), without the copies numpy's indexing makes; their number."""
    n = 0
    for t in thresholds:
        for r in range(precision.shape[1]):
            for k in categories:
                value = precision[t, r, k, area]
                if value > -1:
                    out[n] = value
                    n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _gather_valid_recall(recall, categories, area, out):  # pragma: no cover
    n = 0
    for t in range(recall.shape[0]):
        for k in categories:
            if recall[t, k, area] > -1:
                out[n] = recall[t, k, area]
                n += 1
    return n


def summarize(
    precision: np.ndarray, recall: np.ndarray, groups: list[np.ndarray], max_dets: int
) -> dict[str, float]:
    """``LVISEval.summarize`` plus the original fork's ARr/ARc/ARf, keys as in ``metric_keys``."""
    area = {label: AREA_LABELS.index(label) for label in AREA_LABELS}
    every_threshold = np.arange(precision.shape[0])
    every_category = np.arange(precision.shape[2])
    buffer = np.empty(precision.shape[0] * precision.shape[1] * precision.shape[2])

    # The mean as numpy takes it (pairwise, over the same values in the same order): the same bits.
    def ap(thresholds=every_threshold, categories=every_category, area_label="all"):
        n = _gather_valid_precision(precision, thresholds, categories, area[area_label], buffer)
        return float(np.mean(buffer[:n])) if n else -1.0

    def ar(categories=every_category, area_label="all"):
        n = _gather_valid_recall(recall, categories, area[area_label], buffer)
        return float(np.mean(buffer[:n])) if n else -1.0

    metrics = {
        "AP": ap(),
        "AP50": ap(thresholds=np.flatnonzero(IOU_THRESHOLDS == 0.50)),
        "AP75": ap(thresholds=np.flatnonzero(IOU_THRESHOLDS == 0.75)),
        "APs": ap(area_label="small"),
        "APm": ap(area_label="medium"),
        "APl": ap(area_label="large"),
    }
    for letter, group in zip("rcf", groups, strict=True):
        metrics[f"AP{letter}"] = ap(categories=group)
    metrics[f"AR@{max_dets}"] = ar()
    for label in ("small", "medium", "large"):
        metrics[f"AR{label[0]}@{max_dets}"] = ar(area_label=label)
    for letter, group in zip("rcf", groups, strict=True):
        metrics[f"AR{letter}@{max_dets}"] = ar(categories=group)
    return metrics


@numba.njit(cache=True, nogil=True)
def _resampled_category_ap(
    tp, fp, category_start, image, tie_block_start, weight, num_gt, recall_thresholds
):  # pragma: no cover  # noqa: E501
    """Mean precision (over thresholds and recall points) of each category in one resample; -1 if no gt."""
    num_thrs = tp.shape[0]
    num_cats = len(category_start) - 1
    result = -np.ones(num_cats)
    block = 0
    for k in range(num_cats):
        start, end = category_start[k], category_start[k + 1]
        while tie_block_start[block] < start:
            block += 1
        first_block = block
        if num_gt[k] == 0:
            continue
        size = 0
        for i in range(start, end):
            size += weight[image[i]]
        sequence = np.empty(size, np.int64)  # the category's detections as the resample lists them
        n = 0
        b = first_block
        while tie_block_start[b] < end:
            b0, b1 = tie_block_start[b], tie_block_start[b + 1]
            for _ in range(weight[image[b0]]):
                for i in range(b0, b1):
                    sequence[n] = i
                    n += 1
            b += 1
        tp_row = np.empty(size, np.bool_)
        fp_row = np.empty(size, np.bool_)
        pr = np.empty(size + 1)
        out = np.empty(len(recall_thresholds))
        total = 0.0
        for t in range(num_thrs):
            for j in range(size):
                tp_row[j] = tp[t, sequence[j]]
                fp_row[j] = fp[t, sequence[j]]
            _precision_at_recall(tp_row, fp_row, 0, size, float(num_gt[k]), recall_thresholds, pr, out)
            total += out.sum()
        result[k] = total / (num_thrs * len(recall_thresholds))
    return result


def resample_weights(num_images: int, rounds: int, seed: int) -> np.ndarray:
    """How often each image is drawn in each of ``rounds`` resamples with replacement, (rounds, I)."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_images, size=(rounds, num_images))
    return np.stack([np.bincount(row, minlength=num_images) for row in draws])


def bootstrap_replicates(matches: Matches, groups: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """AP, APr, APc, APf (columns, as ``BOOTSTRAP_KEYS``) of each resample (rows); -1 where undefined."""
    num_cats = len(matches.category_start) - 1
    replicates = np.empty((len(weights), len(BOOTSTRAP_KEYS)))
    regular = matches.gt_regular_all
    for row, weight in enumerate(weights):
        num_gt = np.bincount(
            matches.gt_category[regular], weights=weight[matches.gt_image[regular]], minlength=num_cats
        ).astype(np.int64)
        per_category = _resampled_category_ap(
            matches.tp[0], matches.fp[0], matches.category_start, matches.image,
            matches.tie_block_start, weight.astype(np.int64), num_gt, RECALL_THRESHOLDS,
        )  # fmt: skip
        replicates[row, 0] = _mean_valid(per_category)
        for column, group in enumerate(groups, start=1):
            replicates[row, column] = _mean_valid(per_category[group])
    return replicates


def pooled_curve_ap(tp: np.ndarray, fp: np.ndarray, num_gt: int) -> float:
    """AP of one pool from its (T, N) flags in pooled ranking order, as ``accumulate`` scores a category.

    Precision ``tp / (fp + tp + eps)`` made non-increasing from the right, read at the first detection
    whose recall reaches each of the 101 thresholds (0 past the last), averaged over thresholds and IoUs;
    -1 for a pool without regular ground truth, which Dave et al.'s pooled evaluation leaves at -1 too.
    """
    if num_gt == 0:
        return -1.0
    tp_sum = np.cumsum(tp, axis=1, dtype=np.float64)
    fp_sum = np.cumsum(fp, axis=1, dtype=np.float64)
    recall = tp_sum / num_gt
    precision = np.maximum.accumulate((tp_sum / (fp_sum + tp_sum + EPS))[:, ::-1], axis=1)[:, ::-1]
    at_recall = np.zeros((len(tp), len(RECALL_THRESHOLDS)))
    for t in range(len(tp)):
        index = np.searchsorted(recall[t], RECALL_THRESHOLDS, side="left")
        reached = index < tp.shape[1]
        at_recall[t, reached] = precision[t, index[reached]]
    return float(np.mean(at_recall.ravel()))


def pooled_ap(matches: Matches, groups: list[np.ndarray]) -> dict[str, float]:
    """AP_pool (Dave et al. 2021) of every category and of the r, c, f groups, at area "all".

    Matching is the per-category one; only the ranking changes: one list per pool, all its categories'
    detections by descending score, ties by image, then category, then result-list position (the order
    in which their ``LVISPooledEval`` concatenates ``evaluate_img``'s results before a stable sort).
    """
    num_cats = len(matches.category_start) - 1
    category = np.repeat(np.arange(num_cats), np.diff(matches.category_start))
    order = np.lexsort((np.arange(len(category)), category, matches.image, -matches.score))
    tp, fp, ranked_category = matches.tp[0][:, order], matches.fp[0][:, order], category[order]
    metrics = {}
    for key, pool in zip(POOLED_KEYS, [np.arange(num_cats), *groups], strict=True):
        inside = np.isin(ranked_category, pool)
        metrics[key] = pooled_curve_ap(tp[:, inside], fp[:, inside], int(matches.num_gt[0, pool].sum()))
    return metrics
