"""The OpenImages Detection Challenge 2019 metric (AP at IoU 0.5), in numpy, without TensorFlow.

This is the protocol of the TensorFlow Object Detection API's ``oid_hierarchical_labels_expansion.py``
followed by ``oid_challenge_evaluation.py`` (``OpenImagesChallengeEvaluator``, boxes only), which the
original project ran on its predictions.  It is written here from the protocol's description, not ported.

Inputs (CSV columns are found by header name, so extra columns such as ``Source`` do no harm):

* ground-truth boxes: ``ImageID, LabelName, XMin, XMax, YMin, YMax, IsGroupOf`` (coordinates in [0, 1];
  any non-zero IsGroupOf marks a group-of box, as the official code's cast to bool does);
* image-level labels: ``ImageID, LabelName, Confidence`` (1: verified present, 0: verified absent);
* the class hierarchy, ``challenge-2019-label500-hierarchy.json``: nested ``{"LabelName", "Subcategory"}``;
* the class descriptions, headerless ``MID,display name``: the evaluated classes and their order;
* predictions: ``ImageID, LabelName, Score, XMin, XMax, YMin, YMax`` (coordinates in [0, 1]).

The rules, in the order they are applied:

1. **Hierarchy expansion** (the offline step of the official pipeline).  The top-level node of the
   hierarchy is a virtual root and is skipped; only ``Subcategory`` links are followed, and a class that
   sits in several places gets the union of its ancestors.  Every ground-truth box is copied to each
   ancestor of its class (``IsGroupOf`` copied too); every positive image-level label (Confidence 1) is
   copied to each ancestor; every negative one (Confidence 0) to each descendant.  Predictions are *not*
   expanded: a parent class is scored only on detections labelled with the parent class.  A class absent
   from the hierarchy has no ancestors or descendants.
2. **Evaluated ground truth**: the images are those in the box or the label file.  A class has
   ``num_gt`` = its non-group-of boxes + its group-of boxes, each group-of box counting once (weight 1),
   over all images, after expansion.
3. **Non-exhaustive labelling**: on each image the *evaluatable* classes are the (expanded) image-level
   labels, positive and negative alike, together with the classes of its (expanded) boxes.  Detections of
   any other class on that image are dropped (neither true nor false positives), and so are all
   detections on images that are in neither ground-truth file.  A detection of an evaluatable class that
   matches nothing is a false positive; in particular every detection of a class verified absent (a
   negative label), and every detection of a positively labelled class without boxes.
4. **Per image and class**: detections with ``XMin >= XMax`` or ``YMin >= YMax`` are dropped; the rest
   are sorted by score, highest first, and only the first 10,000 are kept (the official evaluator's
   "NMS" at IoU 1.0, which suppresses nothing).
5. **Stage A, regular boxes, IoU >= 0.5**: in score order each detection is compared with the
   non-group-of box it overlaps most (IoU, no +1 in the areas; the first box on a tie).  If that IoU is
   at least 0.5 and the box is still free, the detection is a true positive and the box is taken;
   otherwise it is a false positive for now.  There is no fall-back to the second-best box (VOC style,
   unlike COCO), so a duplicate of a taken box is a false positive.
6. **Stage B, group-of boxes, IoA >= 0.5**: each detection that is not a true positive after stage A
   (duplicates included) is compared with the group-of box of largest intersection over the
   *detection's* area.  If that is at least 0.5 the detection is ignored, and the group-of box becomes a
   single true positive whose score is the highest score of the detections it absorbed.  As in the
   official code, a group-of box whose absorbed detections all score 0 or less yields no true positive;
   a group-of box that absorbs nothing stays a missed object (it is in ``num_gt``).
7. **AP per class** (``compute_precision_recall`` and ``compute_average_precision`` of the TF OD API):
   all images' entries are sorted by score, highest first; precision = TP / (TP + FP) and recall =
   TP / ``num_gt`` along that list; the curve is padded with (recall 0, precision 0) in front and
   (recall 1, precision 0) behind, precision is made non-increasing from the right, and AP is the sum
   of recall step x precision at every change of recall (VOC 2010 all points).  A class with ground
   truth but no detections has AP 0; a class without ground truth has AP NaN.
8. **mAP** is the mean over the classes with ground truth (``np.nanmean`` over all classes).

Ties in score: the official code sorts with numpy's default (unstable) ``argsort`` reversed, so the order
of tied entries depends on the numpy build.  Here every sort is stable: tied detections of one image keep
the predictions file's order, and tied entries of a class keep the order of their images (sorted
ImageID) and, within an image, regular detections before group-of entries.  Only AP under ties can
differ from the official numbers.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from eqlv2.io import atomic_write_text

IOU_THRESHOLD = 0.5
MAX_DETECTIONS_PER_IMAGE_AND_CLASS = 10_000
METRIC_PREFIX = "OpenImagesDetectionChallenge"
MAP_NAME = f"{METRIC_PREFIX}_Precision/mAP@0.5IOU"
AP_NAME_PREFIX = f"{METRIC_PREFIX}_PerformanceByCategory/AP@0.5IOU/"

BOX_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf")
LABEL_COLUMNS = ("ImageID", "LabelName", "Confidence")
PREDICTION_COLUMNS = ("ImageID", "LabelName", "Score", "XMin", "XMax", "YMin", "YMax")
_TEXT_COLUMNS = ("ImageID", "LabelName")


# ---------------------------------------------------------------------------------------------- reading


def _require_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    return path


def read_table(path: str | Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    """Read the named ``columns`` of a CSV with a header; every column but ImageID/LabelName numeric.

    Raises ValueError naming the file and the column when a column is missing or holds a value that is
    not a finite number.
    """
    path = _require_file(path, what)
    try:
        header = pd.read_csv(path, nrows=0).columns
    except pd.errors.EmptyDataError as err:
        raise ValueError(f"{path}: empty file, expected a CSV header with {', '.join(columns)}") from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from err
    for column in columns:
        if column not in header:
            raise ValueError(f"{path}: missing column '{column}' (header: {','.join(map(str, header))})")
    dtypes = {c: str for c in columns if c in _TEXT_COLUMNS}
    try:
        frame = pd.read_csv(path, usecols=list(columns), dtype=dtypes, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a readable CSV ({err})") from err
    for column in columns:
        if column in _TEXT_COLUMNS:
            continue
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{path}: column '{column}' holds {frame[column].iloc[row]!r} on data row {row + 1}, "
                "not a finite number"
            )
        frame[column] = values
    return frame


def read_classes(path: str | Path) -> list[str]:
    """The evaluated classes' MIDs, in the order of the headerless ``MID,display name`` CSV."""
    path = _require_file(path, "class description file")
    mids: list[str] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not row[0].strip():
                continue
            mid = row[0].strip()
            if mid in mids:
                raise ValueError(f"{path}: MID '{mid}' on line {number} appears twice")
            mids.append(mid)
    if not mids:
        raise ValueError(f"{path}: no classes (expected lines 'MID,display name')")
    return mids


def read_hierarchy(path: str | Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(ancestors, descendants)`` of every class below the virtual root of a hierarchy JSON.

    Only ``Subcategory`` links count; the root's own LabelName is neither an ancestor nor a class.
    """
    path = _require_file(path, "hierarchy file")
    try:
        root = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(root, dict) or "LabelName" not in root:
        raise ValueError(f"{path}: the top level must be an object with a 'LabelName' (the root)")
    ancestors: dict[str, set[str]] = {}
    descendants: dict[str, set[str]] = {}

    def visit(node, above: tuple[str, ...]) -> None:
        if not isinstance(node, dict) or not isinstance(node.get("LabelName"), str):
            raise ValueError(f"{path}: a node under {above[-1] if above else 'the root'} lacks 'LabelName'")
        label = node["LabelName"]
        ancestors.setdefault(label, set()).update(above)
        descendants.setdefault(label, set())
        for parent in above:
            descendants[parent].add(label)
        children = node.get("Subcategory", [])
        if not isinstance(children, list):
            raise ValueError(f"{path}: 'Subcategory' of {label} is not a list")
        for child in children:
            visit(child, (*above, label))

    children = root.get("Subcategory", [])
    if not isinstance(children, list):
        raise ValueError(f"{path}: 'Subcategory' of the root is not a list")
    for child in children:
        visit(child, ())
    return ancestors, descendants


# ----------------------------------------------------------------------------------------- expansion


def _relation_table(relation: Mapping[str, set[str]], classes: Sequence[str], source: Path, classes_path):
    """CSR arrays: for class index c, ``flat[start[c]:start[c] + size[c]]`` = c and its related classes."""
    index = {mid: i for i, mid in enumerate(classes)}
    lists = []
    for mid in classes:
        related = sorted(relation.get(mid, ()), key=lambda m: index.get(m, -1))
        for other in related:
            if other not in index:
                raise ValueError(f"{source}: LabelName '{other}' is not a class of {classes_path}")
        lists.append([index[mid]] + [index[m] for m in related])
    size = np.array([len(x) for x in lists], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64)
    flat = np.array([i for x in lists for i in x], dtype=np.int64)
    return flat, start, size


def _expand(labels: np.ndarray, table) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the row index repeated once per class of its expansion, and those classes.

    A row's own class comes first, then its relatives, so rows stay in file order.
    """
    flat, start, size = table
    counts = size[labels]
    rows = np.repeat(np.arange(len(labels)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return rows, flat[np.repeat(start[labels], counts) + offsets]


def _class_indices(values: np.ndarray, class_index: pd.Index, path: Path) -> np.ndarray:
    found = class_index.get_indexer(values)
    if (found < 0).any():
        unknown = values[int(np.flatnonzero(found < 0)[0])]
        raise ValueError(f"{path}: column 'LabelName' holds '{unknown}', which is not an evaluated class")
    return found.astype(np.int64)


# -------------------------------------------------------------------------------------------- matching


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection areas of boxes ``(xmin, ymin, xmax, ymax)``: ``(len(a), len(b))``."""
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.maximum(width, 0.0) * np.maximum(height, 0.0)


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def match_image_class(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_group_of: np.ndarray,
    iou_threshold: float = IOU_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stages A and B for one image and class (rules 5 and 6 of the module docstring).

    ``det_boxes`` must be valid and sorted by score, highest first; boxes are ``(xmin, ymin, xmax, ymax)``.
    Returns ``(is_tp, is_ignored, group_scores)``: per detection whether it is a true positive and whether
    a group-of box absorbed it (a detection that is neither is a false positive), and the scores of the
    group-of boxes that count as one true positive each, in ground-truth order.
    """
    n = len(det_boxes)
    is_tp = np.zeros(n, dtype=bool)
    is_ignored = np.zeros(n, dtype=bool)
    gt_group_of = np.asarray(gt_group_of, dtype=bool)
    regular, group = gt_boxes[~gt_group_of], gt_boxes[gt_group_of]
    with np.errstate(divide="ignore", invalid="ignore"):
        if n and len(regular):
            inter = _intersections(det_boxes, regular)
            iou = inter / (_areas(det_boxes)[:, None] + _areas(regular)[None, :] - inter)
            best = np.argmax(iou, axis=1)
            hit = np.flatnonzero(iou[np.arange(n), best] >= iou_threshold)
            # In score order the first hit on a box takes it; later hits on it stay false positives.
            _, first = np.unique(best[hit], return_index=True)
            is_tp[hit[first]] = True
        group_scores = np.zeros(len(group))
        rest = np.flatnonzero(~is_tp)
        if len(rest) and len(group):
            ioa = _intersections(det_boxes[rest], group) / _areas(det_boxes[rest])[:, None]
            best = np.argmax(ioa, axis=1)
            hit = ioa[np.arange(len(rest)), best] >= iou_threshold
            is_ignored[rest[hit]] = True
            np.maximum.at(group_scores, best[hit], det_scores[rest[hit]])
    return is_tp, is_ignored, group_scores[group_scores > 0]


def precision_recall(tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall along a list of true (1) / false (0) positives already sorted by score."""
    tp = np.asarray(tp, dtype=float)
    cum_tp = np.cumsum(tp)
    cum_fp = np.cumsum(tp <= 0)
    return cum_tp / (cum_tp + cum_fp), cum_tp / num_gt


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the whole precision-recall curve, the TF OD API's ``compute_average_precision``.

    Pad recall with 0 and 1 and precision with 0 and 0, make precision non-increasing from the right,
    and sum recall step x precision over the points where recall changes.
    """
    precision, recall = np.asarray(precision, dtype=float), np.asarray(recall, dtype=float)
    if precision.shape != recall.shape or precision.ndim != 1:
        raise ValueError("precision and recall must be 1-d arrays of the same length")
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


# ------------------------------------------------------------------------------------------ evaluation


def _boxes(frame: pd.DataFrame) -> np.ndarray:
    return frame[["XMin", "YMin", "XMax", "YMax"]].to_numpy(dtype=float)


def evaluate_openimages(
    boxes_csv: str | Path,
    labels_csv: str | Path,
    hierarchy_json: str | Path,
    classes_csv: str | Path,
    predictions_csv: str | Path,
) -> tuple[float, dict[str, float]]:
    """The Challenge metric: ``(mAP, {MID: AP})``, the dict in class-description order, NaN without GT.

    See the module docstring for the rules.
    """
    classes = read_classes(classes_csv)
    ancestors, descendants = read_hierarchy(hierarchy_json)
    boxes = read_table(boxes_csv, BOX_COLUMNS, "ground-truth box file")
    labels = read_table(labels_csv, LABEL_COLUMNS, "image-level label file")
    predictions = read_table(predictions_csv, PREDICTION_COLUMNS, "predictions file")
    confidence = labels["Confidence"].to_numpy()
    if not np.isin(confidence, (0.0, 1.0)).all():
        value = confidence[~np.isin(confidence, (0.0, 1.0))][0]
        raise ValueError(
            f"{labels_csv}: column 'Confidence' holds {value:g}; expected 1 (present) or 0 (absent)"
        )

    num_classes = len(classes)
    class_index = pd.Index(classes)
    up = _relation_table(ancestors, classes, Path(hierarchy_json), classes_csv)
    down = _relation_table(descendants, classes, Path(hierarchy_json), classes_csv)

    # Rule 1: expansion.  Ground truth images are indexed in sorted ImageID order.
    box_rows, box_cls = _expand(
        _class_indices(boxes["LabelName"].to_numpy(dtype=object), class_index, Path(boxes_csv)), up
    )
    label_cls = _class_indices(labels["LabelName"].to_numpy(dtype=object), class_index, Path(labels_csv))
    positive = confidence == 1.0
    pos_rows, pos_cls = _expand(label_cls[positive], up)
    neg_rows, neg_cls = _expand(label_cls[~positive], down)
    box_ids = boxes["ImageID"].to_numpy(dtype=object)
    label_ids = labels["ImageID"].to_numpy(dtype=object)
    images = pd.Index(sorted(set(box_ids) | set(label_ids)), dtype=object)
    box_img = images.get_indexer(box_ids)[box_rows]
    label_img = images.get_indexer(label_ids)
    pos_img, neg_img = label_img[positive][pos_rows], label_img[~positive][neg_rows]

    gt_boxes = _boxes(boxes)[box_rows]
    gt_group_of = boxes["IsGroupOf"].to_numpy()[box_rows] != 0
    num_gt = np.bincount(box_cls, minlength=num_classes)  # rule 2

    # Rule 3: which (image, class) pairs are evaluatable.
    gt_keys = box_img * num_classes + box_cls
    evaluatable = np.unique(
        np.concatenate([gt_keys, pos_img * num_classes + pos_cls, neg_img * num_classes + neg_cls])
    )
    det_img = images.get_indexer(predictions["ImageID"].to_numpy(dtype=object))
    det_cls = _class_indices(
        predictions["LabelName"].to_numpy(dtype=object), class_index, Path(predictions_csv)
    )
    det_keys = det_img * num_classes + det_cls
    det_boxes = _boxes(predictions)
    det_scores = predictions["Score"].to_numpy(dtype=float)
    valid = (det_boxes[:, 0] < det_boxes[:, 2]) & (det_boxes[:, 1] < det_boxes[:, 3])  # rule 4
    keep = (det_img >= 0) & np.isin(det_keys, evaluatable) & valid
    det_keys, det_boxes, det_scores = det_keys[keep], det_boxes[keep], det_scores[keep]

    # Rule 4: per pair, by score (stable), at most 10,000.
    order = np.lexsort((-det_scores, det_keys))
    det_keys, det_boxes, det_scores = det_keys[order], det_boxes[order], det_scores[order]
    pair_keys, pair_start, pair_size = np.unique(det_keys, return_index=True, return_counts=True)
    rank = np.arange(len(det_keys)) - np.repeat(pair_start, pair_size)
    capped = rank < MAX_DETECTIONS_PER_IMAGE_AND_CLASS
    det_keys, det_boxes, det_scores, rank = (a[capped] for a in (det_keys, det_boxes, det_scores, rank))
    pair_keys, pair_start, pair_size = np.unique(det_keys, return_index=True, return_counts=True)

    # Rules 5 and 6: only pairs with ground-truth boxes need matching; elsewhere all are false positives.
    gt_order = np.argsort(gt_keys, kind="stable")
    gt_keys, gt_boxes, gt_group_of = gt_keys[gt_order], gt_boxes[gt_order], gt_group_of[gt_order]
    gt_lo = np.searchsorted(gt_keys, pair_keys, side="left")
    gt_hi = np.searchsorted(gt_keys, pair_keys, side="right")
    is_tp = np.zeros(len(det_keys), dtype=bool)
    is_ignored = np.zeros(len(det_keys), dtype=bool)
    extra_keys, extra_rank, extra_scores = [], [], []
    for p in np.flatnonzero(gt_hi > gt_lo):
        lo, hi = pair_start[p], pair_start[p] + pair_size[p]
        tp, ignored, group_scores = match_image_class(
            det_boxes[lo:hi],
            det_scores[lo:hi],
            gt_boxes[gt_lo[p] : gt_hi[p]],
            gt_group_of[gt_lo[p] : gt_hi[p]],
        )
        is_tp[lo:hi], is_ignored[lo:hi] = tp, ignored
        if len(group_scores):
            extra_keys.append(np.full(len(group_scores), pair_keys[p]))
            extra_rank.append(pair_size[p] + np.arange(len(group_scores)))
            extra_scores.append(group_scores)

    # Rule 7: per class, all entries by score (stable: image order, then the order within the image).
    counted = ~is_ignored
    keys = np.concatenate([det_keys[counted], *extra_keys]).astype(np.int64)
    within = np.concatenate([rank[counted], *extra_rank])
    scores = np.concatenate([det_scores[counted], *extra_scores])
    tps = np.concatenate([is_tp[counted], np.ones(sum(len(s) for s in extra_scores), dtype=bool)])
    entry_cls, entry_img = keys % num_classes, keys // num_classes
    order = np.lexsort((within, entry_img, -scores, entry_cls))
    entry_cls, tps = entry_cls[order], tps[order]
    bounds = np.searchsorted(entry_cls, np.arange(num_classes + 1))
    per_class: dict[str, float] = {}
    for c, mid in enumerate(classes):
        if num_gt[c] == 0:
            per_class[mid] = math.nan
            continue
        precision, recall = precision_recall(tps[bounds[c] : bounds[c + 1]], int(num_gt[c]))
        per_class[mid] = average_precision(precision, recall)
    return mean_ap(per_class.values()), per_class


def mean_ap(values: Iterable[float]) -> float:
    """Mean of the APs that are not NaN (rule 8); NaN when there are none."""
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


# -------------------------------------------------------------------------------------- metrics file


def format_metrics_file(mean: float, per_class: Mapping[str, float]) -> str:
    """The official metrics file: the mAP line, then one ``AP@0.5IOU/<MID>`` line per class, in order."""
    lines = [f"{MAP_NAME},{float(mean)!r}"]
    lines += [f"{AP_NAME_PREFIX}{mid},{float(ap)!r}" for mid, ap in per_class.items()]
    return "\n".join(lines) + "\n"


def write_metrics_file(path: str | Path, mean: float, per_class: Mapping[str, float]) -> Path:
    """Write :func:`format_metrics_file` atomically."""
    return atomic_write_text(path, format_metrics_file(mean, per_class))


# ---------------------------------------------------------------------------- prediction conversion


def _load_json(path: str | Path, what: str):
    path = _require_file(path, what)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def convert_predictions(results_json: str | Path, ann_json: str | Path, out_csv: str | Path) -> int:
    """Write mmdet's COCO-style ``[{image_id, category_id, bbox [x, y, w, h], score}]`` as a Challenge CSV.

    The header is ``ImageID,LabelName,Score,XMin,XMax,YMin,YMax``; one row per detection, in the result
    file's order.  Coordinates are divided by the image's width and height from the COCO JSON's
    ``images`` and clipped to [0, 1]; the ImageID is the image's ``openimages_id`` field if it has one,
    else the stem of its ``file_name``; the LabelName is the category's ``freebase_id``.  Score and
    coordinates are written with 6 decimals.  Returns the number of rows.
    """
    results = _load_json(results_json, "result file")
    ann = _load_json(ann_json, "annotation file")
    if not isinstance(results, list):
        raise ValueError(f"{results_json}: expected a JSON list of detections, got {type(results).__name__}")
    if not isinstance(ann, dict):
        raise ValueError(f"{ann_json}: expected a COCO-style JSON object")
    for key in ("images", "categories"):
        if key not in ann:
            raise ValueError(f"{ann_json}: no '{key}'")
    images = {}
    for image in ann["images"]:
        for field in ("id", "width", "height"):
            if field not in image:
                raise ValueError(f"{ann_json}: an image lacks the field '{field}'")
        if "openimages_id" in image:
            name = str(image["openimages_id"])
        elif "file_name" in image:
            name = Path(str(image["file_name"])).stem
        else:
            raise ValueError(f"{ann_json}: image {image['id']} has neither 'openimages_id' nor 'file_name'")
        images[str(image["id"])] = (name, float(image["width"]), float(image["height"]))
    mids = {}
    for category in ann["categories"]:
        if "freebase_id" not in category:
            raise ValueError(f"{ann_json}: category {category.get('id')} lacks the field 'freebase_id'")
        mids[category["id"]] = category["freebase_id"]
    lines = [",".join(PREDICTION_COLUMNS)]
    for number, det in enumerate(results):
        for field in ("image_id", "category_id", "bbox", "score"):
            if field not in det:
                raise ValueError(f"{results_json}: detection {number} lacks the field '{field}'")
        if str(det["image_id"]) not in images:
            raise ValueError(
                f"{results_json}: field 'image_id' {det['image_id']!r} is not an image of {ann_json}"
            )
        if det["category_id"] not in mids:
            raise ValueError(
                f"{results_json}: field 'category_id' {det['category_id']!r} is not a category of {ann_json}"
            )
        name, width, height = images[str(det["image_id"])]
        x, y, w, h = (float(v) for v in det["bbox"])
        xmin, xmax = np.clip([x / width, (x + w) / width], 0.0, 1.0)
        ymin, ymax = np.clip([y / height, (y + h) / height], 0.0, 1.0)
        lines.append(
            f"{name},{mids[det['category_id']]},{float(det['score']):.6f},"
            f"{xmin:.6f},{xmax:.6f},{ymin:.6f},{ymax:.6f}"
        )
    atomic_write_text(out_csv, "\n".join(lines) + "\n")
    return len(lines) - 1
