"""Reading an LVIS annotation file and a COCO-style result file into arrays, as ``LVISEval`` selects them.

The fast evaluator (:mod:`eqlv2.evaluation.lvis`) must see exactly the annotations and detections the
``lvis`` package's ``LVISEval`` sees, in the same order, because order decides ties.  What the package
does before matching, and what this module reproduces:

* ``LVISResults.limit_dets_per_image``: detections are grouped by image in the order images first appear
  in the result file; an image with more than ``max_dets`` detections keeps its ``max_dets`` best (a stable
  sort by score, so equal scores keep file order), the others keep file order.  Detection ``k`` of that
  list is the ``k``-th in every later tie-break.
* Under the fixed protocol (Dave et al. 2021, ``scripts/evaluate_ap_fixed.py`` of large-vocab-devil)
  there is no per-image cap; instead the list is regrouped by category, categories in the order they
  first appear in the file, each keeping its ``K`` best by a stable sort on descending score, and handed
  to ``LVISResults`` with ``max_dets=-1``, which keeps that order.
* A detection's area is ``w * h`` of its box when the (first) detection has a ``bbox``, else its mask area.
* ``LVIS.get_ann_ids`` keeps only annotations and detections with ``0 < area < inf``: degenerate
  ground truth (zero width or height, real LVIS v1 val has some) disappears, and with it the image's
  claim that the category is present.
* The federated rule: a detection is kept only if its category is in the image's ``neg_category_ids`` or
  has a kept ground-truth annotation in the image.

Where the package would go on silently with what is almost always a bug (a detection whose category or
image is not in the annotation file: a category-id mapping error; a NaN score; a mask of another image
size), this module raises a one-line ``ValueError`` naming the file and the detection instead.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np
import orjson
from pycocotools import mask as mask_utils

from eqlv2.evaluation import rle
from eqlv2.evaluation.result_file import (
    BBOX,
    CATEGORY_ID,
    IMAGE_ID,
    SCORE,
    SEGMENTATION,
    Results,
    map_file,
    results_from_objects,
    scan_results,
)

FREQUENCIES = ("r", "c", "f")
_log = logging.getLogger(__name__)
_TABLE_LIMIT = 1 << 23  # ids below this are looked up in a table (64 MiB at most)


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file, naming it when it is missing, truncated or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    data = path.read_bytes()
    try:
        return orjson.loads(data)  # the same values as json.loads, about twice as fast
    except orjson.JSONDecodeError:
        pass
    try:  # Python's json also reads NaN and Infinity, which the checks of the values then name
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON, truncated or corrupt? ({err})") from err


def _field(record: dict, key: str, path: Path, what: str) -> Any:
    try:
        return record[key]
    except (KeyError, TypeError):
        ident = record.get("id", "?") if isinstance(record, dict) else "?"
        raise ValueError(f"{path}: {what} {ident} lacks the field '{key}'") from None


@dataclass
class GroundTruth:
    """The ground truth of an LVIS annotation file, reduced to what evaluation reads.

    Images and categories are indexed by their position in sorted id order (``LVISEval.params``).
    Annotations are the kept ones (``0 < area < inf``) in the package's order: by image, then file order.
    """

    path: Path
    image_ids: np.ndarray  # (I,) sorted
    image_sizes: np.ndarray  # (I, 2) height, width
    category_ids: np.ndarray  # (K,) sorted
    frequency: np.ndarray  # (K,) index into FREQUENCIES
    category_names: list  # (K,) the categories' "name" ("" where absent)
    category_counts: np.ndarray  # (K, 2) training image_count, instance_count of each category (-1: absent)
    neg_keys: np.ndarray  # sorted image_index * K + category_index of each image's negative categories
    not_exhaustive_keys: np.ndarray  # the same for not_exhaustive_category_ids
    ann_image: np.ndarray  # (G,) image index
    ann_category: np.ndarray  # (G,) category index
    ann_area: np.ndarray  # (G,) float64, the file's "area"
    ann_ignore: np.ndarray  # (G,) bool
    ann_id_nonzero: np.ndarray  # (G,) bool: LVISEval records a match as the gt id, so id 0 never matches
    ann_bbox: np.ndarray  # (G, 4) float64 x, y, w, h (bbox evaluation)
    # segm evaluation: annotation g's mask as a compressed RLE string, ann_mask_text[begin[g]:end[g]]
    ann_mask_text: np.ndarray | None = None  # uint8
    ann_mask_begin: np.ndarray | None = None  # (G,)
    ann_mask_end: np.ndarray | None = None  # (G,)

    @property
    def num_categories(self) -> int:
        return len(self.category_ids)

    def frequency_groups(self) -> list[np.ndarray]:
        """Category indices of the rare, common and frequent groups (``LVISEval._prepare_freq_group``)."""
        return [np.flatnonzero(self.frequency == i) for i in range(len(FREQUENCIES))]


def _unique_sorted_ids(values: list, path: Path, what: str) -> np.ndarray:
    ids = np.asarray(values)
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{path}: {what} ids must be integers")
    ids = ids.astype(np.int64)
    order = np.sort(ids)
    if order.size and np.any(order[1:] == order[:-1]):
        duplicate = order[1:][order[1:] == order[:-1]][0]
        raise ValueError(f"{path}: {what} id {duplicate} appears more than once")
    return order


def _index_of(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``ids`` in ``sorted_ids`` and whether each was found (elsewhere the position is 0).

    Ids up to a few million (LVIS's image ids reach 581,929) are looked up in a table, a few times faster
    than a binary search per detection; larger ones are searched.
    """
    if not len(sorted_ids):
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    low, high = int(sorted_ids[0]), int(sorted_ids[-1])
    if low >= 0 and high < _TABLE_LIMIT:
        table = np.full(high + 2, -1, np.int64)  # the last entry stands for every id out of range
        table[sorted_ids] = np.arange(len(sorted_ids))
        index = table[np.where((ids >= 0) & (ids <= high), ids, high + 1)]
    else:
        index = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        index[sorted_ids[index] != ids] = -1
    found = index >= 0
    return np.maximum(index, 0), found


def _id_list(image: dict, key: str, path: Path) -> list:
    ids = _field(image, key, path, "image")
    if type(ids) is not list:
        raise ValueError(f"{path}: image {image.get('id', '?')} has '{key}' {ids!r}, not a list of ids")
    return ids


def _image_category_keys(image_index: np.ndarray, lists: list[list], categories: np.ndarray) -> np.ndarray:
    """Sorted unique ``image * K + category`` keys of each image's category list (ids not in the file's
    categories left out, as ``LVISEval`` never meets them)."""
    lengths = np.fromiter(map(len, lists), np.int64, len(lists))
    flat = np.fromiter((c for ids in lists for c in ids), np.int64, int(lengths.sum()))
    index, found = _index_of(categories, flat)
    keys = np.repeat(image_index, lengths) * len(categories) + index
    return np.unique(keys[found])


def load_ground_truth(path: str | Path, iou_type: str) -> GroundTruth:
    """Read an LVIS-format annotation file, refusing what ``LVISEval`` would crash on or misread."""
    path = Path(path)
    dataset = read_json(path, "annotation file")
    if not isinstance(dataset, dict):
        raise ValueError(f"{path}: expected an LVIS annotation object, got a {type(dataset).__name__}")
    for key in ("images", "categories", "annotations"):
        if not isinstance(dataset.get(key), list):
            raise ValueError(f"{path}: lacks the list '{key}' of an LVIS annotation file")
    images, categories, annotations = dataset["images"], dataset["categories"], dataset["annotations"]
    if not images or not categories:
        raise ValueError(f"{path}: holds no images or no categories")

    image_ids = _unique_sorted_ids([_field(i, "id", path, "image") for i in images], path, "image")
    category_ids = _unique_sorted_ids(
        [_field(c, "id", path, "category") for c in categories], path, "category"
    )
    num_cats = len(category_ids)

    frequency = np.empty(num_cats, np.int64)
    names = [""] * num_cats
    counts = np.full((num_cats, 2), -1, np.int64)
    for cat in categories:
        index = int(np.searchsorted(category_ids, cat["id"]))
        names[index] = str(cat.get("name", ""))
        counts[index] = (cat.get("image_count", -1), cat.get("instance_count", -1))
        letter = _field(cat, "frequency", path, "category")
        if letter not in FREQUENCIES:
            raise ValueError(f"{path}: category {cat['id']} has frequency {letter!r}, not one of r, c, f")
        frequency[np.searchsorted(category_ids, cat["id"])] = FREQUENCIES.index(letter)

    image_sizes = np.zeros((len(image_ids), 2), np.int64)
    image_position = _index_of(image_ids, np.array([image["id"] for image in images], np.int64))[0]
    image_sizes[image_position] = [
        (_field(image, "height", path, "image"), _field(image, "width", path, "image")) for image in images
    ]
    neg_keys = _image_category_keys(
        image_position, [_field(i, "neg_category_ids", path, "image") for i in images], category_ids
    )
    not_exhaustive_keys = _image_category_keys(
        image_position,
        [_field(i, "not_exhaustive_category_ids", path, "image") for i in images],
        category_ids,
    )

    # LVIS indexes annotations by id, so a repeated id would hide an annotation: refuse it.
    _unique_sorted_ids([_field(a, "id", path, "annotation") for a in annotations], path, "annotation")
    raw_image = np.array([_field(a, "image_id", path, "annotation") for a in annotations], np.int64)
    raw_category = np.array([_field(a, "category_id", path, "annotation") for a in annotations], np.int64)
    image_index, image_found = _index_of(image_ids, raw_image)
    category_index, category_found = _index_of(category_ids, raw_category)
    for found, field in ((image_found, "image_id"), (category_found, "category_id")):
        if not found.all():
            bad = annotations[int(np.flatnonzero(~found)[0])]
            raise ValueError(
                f"{path}: annotation {bad['id']} has {field} {bad[field]}, which the file does not list"
            )
    area = np.array([_field(a, "area", path, "annotation") for a in annotations], np.float64)
    kept = (area > 0) & (area < math.inf)
    # LVIS.get_ann_ids walks the images in sorted id order and each image's annotations in file order.
    order = np.flatnonzero(kept)
    order = order[np.argsort(image_index[order], kind="stable")]
    kept_anns = [annotations[i] for i in order]
    region = "bbox" if iou_type == "bbox" else "segmentation"
    regions = [_field(a, region, path, "annotation") for a in kept_anns]
    bbox = np.array(regions, np.float64).reshape(-1, 4) if region == "bbox" else np.zeros((len(order), 4))
    masks = (None, None, None)
    if region == "segmentation":
        masks = gt_mask_strings(regions, image_index[order], image_sizes)
    return GroundTruth(
        path=path,
        image_ids=image_ids,
        image_sizes=image_sizes,
        category_ids=category_ids,
        frequency=frequency,
        category_names=names,
        category_counts=counts,
        neg_keys=neg_keys,
        not_exhaustive_keys=not_exhaustive_keys,
        ann_image=image_index[order],
        ann_category=category_index[order],
        ann_area=area[order],
        ann_ignore=np.array([bool(a.get("ignore", 0)) for a in kept_anns], bool),
        ann_id_nonzero=np.array([a["id"] != 0 for a in kept_anns], bool),
        ann_bbox=bbox,
        ann_mask_text=masks[0],
        ann_mask_begin=masks[1],
        ann_mask_end=masks[2],
    )


@dataclass
class Detections:
    """The detections ``LVISEval`` matches, in the order of ``limit_dets_per_image``'s list (``position``)."""

    image: np.ndarray  # (D,) image index
    category: np.ndarray  # (D,) category index
    score: np.ndarray  # (D,) float64
    position: np.ndarray  # (D,) rank in the capped result list: the tie-break after score
    area: np.ndarray  # (D,) float64
    bbox: np.ndarray  # (D, 4) float64 (NaN where the file had no box)
    mask_text: np.ndarray | None  # a byte buffer holding the compressed RLE strings (segm evaluation)
    mask_begin: np.ndarray | None  # (D,) detection d's string is mask_text[mask_begin[d]:mask_end[d]]
    mask_end: np.ndarray | None  # (D,)
    mask_escaped: bool  # the strings are as JSON wrote them (each backslash twice)
    not_exhaustive: np.ndarray  # (D,) bool: the category is not exhaustively annotated in the image


def _check_finite(values: np.ndarray, path: Path, results: Results, index: np.ndarray, what: str) -> None:
    if not len(values):
        return
    bad = ~np.isfinite(values).reshape(len(values), -1).all(axis=1)
    if bad.any():
        first = int(index[np.flatnonzero(bad)[0]])
        shown = results.score[first] if what == "score" else results.bbox[first].tolist()
        raise ValueError(
            f"{path}: detection {first} (image_id {results.image_id[first]}) has a non-finite {what}: {shown}"
        )


@numba.njit(cache=True, nogil=True)
def _cap_per_image(image, score, num_images, max_dets):  # pragma: no cover
    """Indices of the detections ``limit_dets_per_image`` keeps, in the order of its output list.

    Images in the order they first appear in the file, each image's detections in file order, except
    that an image over the cap keeps its ``max_dets`` best by a stable sort on descending score.
    ``image``: each detection's image index (0 .. num_images - 1).
    """
    rank = np.full(num_images, -1, np.int64)  # order of first appearance
    count = np.zeros(num_images + 1, np.int64)  # detections of each rank, shifted by one
    ranks = 0
    for d in range(len(image)):
        if rank[image[d]] < 0:
            rank[image[d]] = ranks
            ranks += 1
        count[rank[image[d]] + 1] += 1
    start = np.cumsum(count[: ranks + 1])
    fill = start[:-1].copy()
    grouped = np.empty(len(image), np.int64)  # detections by rank, file order within an image
    for d in range(len(image)):
        r = rank[image[d]]
        grouped[fill[r]] = d
        fill[r] += 1
    kept = np.empty(len(image), np.int64)
    n = 0
    for r in range(ranks):
        members = grouped[start[r] : start[r + 1]]
        if len(members) > max_dets:
            members = members[np.argsort(-score[members], kind="mergesort")[:max_dets]]
        kept[n : n + len(members)] = members
        n += len(members)
    return kept[:n]


def top_per_category(category: np.ndarray, score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the detections the fixed protocol keeps, in the order of its result list, and the
    number of detections of each category present (in that category order) before the cut.

    The order is the one Dave et al.'s script hands to ``LVISResults``: categories in the order they first
    appear in the file (a dict filled in file order), each category's detections by a stable sort on
    descending score (ties in file order), the first ``k`` of each.
    """
    present, first = np.unique(category, return_index=True)
    rank = np.empty(len(present), np.int64)  # a category's place by first appearance
    rank[np.argsort(first, kind="stable")] = np.arange(len(present))
    category_rank = rank[np.searchsorted(present, category)]
    order = np.lexsort((-score, category_rank))  # lexsort is stable: equal scores keep file order
    counts = np.bincount(category_rank, minlength=len(present))
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    within = np.arange(len(order)) - np.repeat(start, counts)
    return order[within < k], counts


def mask_rle(segmentation: Any, height: int, width: int) -> dict:
    """``LVIS.ann_to_rle``: polygons and uncompressed RLE become compressed RLE; RLE stays as it is."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def mask_string(segmentation: Any, height: int, width: int) -> tuple[bytes, list]:
    """A mask's compressed RLE string and its size, from any of the forms ``LVIS.ann_to_rle`` reads."""
    if type(segmentation) is dict and type(segmentation.get("counts")) is str:  # what mmdet writes
        return segmentation["counts"].encode(), segmentation.get("size")
    rle = mask_rle(segmentation, height, width)
    counts = rle["counts"]
    return (counts.encode() if isinstance(counts, str) else counts), rle.get("size")


def _is_polygon_list(segmentation: Any) -> bool:
    """Polygons that ``frPyObjects`` reads as polygons whether given alone or among other annotations'
    (it decides by the first item's length: 4 numbers would make the whole list boxes)."""
    return (
        type(segmentation) is list
        and len(segmentation) > 0
        and all(type(polygon) is list and len(polygon) > 4 for polygon in segmentation)
    )


def gt_mask_strings(
    segmentations: list, image_index: np.ndarray, image_sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every annotation's mask as the compressed RLE string ``LVIS.ann_to_rle`` gives, in one buffer.

    Annotations come grouped by image (``image_index`` non-decreasing).  The polygons of one image go to
    pycocotools in one ``frPyObjects`` call, a single-polygon annotation keeps its RLE as it is (``merge``
    of one RLE copies it), a multi-polygon one merges its own: the same strings as one
    :func:`mask_string` call per annotation, with a Python call per image instead of two per annotation.
    Returns (text, begin, end): annotation g's string is ``text[begin[g]:end[g]]``.
    """
    strings: list[bytes] = [b""] * len(segmentations)
    boundaries = np.flatnonzero(np.diff(image_index)) + 1
    for group in np.split(np.arange(len(segmentations)), boundaries):
        if not group.size:
            continue
        height, width = (int(v) for v in image_sizes[image_index[group[0]]])
        batched = []
        for g in group.tolist():
            if _is_polygon_list(segmentations[g]):
                batched.append(g)
            else:
                strings[g] = mask_string(segmentations[g], height, width)[0]
        if not batched:
            continue
        polygons = [polygon for g in batched for polygon in segmentations[g]]
        rles = mask_utils.frPyObjects(polygons, height, width)
        start = 0
        for g in batched:
            count = len(segmentations[g])
            own = rles[start : start + count]
            strings[g] = (own[0] if count == 1 else mask_utils.merge(own))["counts"]
            start += count
    lengths = np.fromiter(map(len, strings), np.int64, len(strings))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return np.frombuffer(b"".join(strings), np.uint8), offsets[:-1], offsets[1:]


def read_results(path: Path) -> Results:
    """A result file's detections as arrays: by the scanner, or through a JSON library where it declines."""
    if not path.is_file():
        raise FileNotFoundError(f"result file {path} does not exist")
    results = scan_results(map_file(path))
    if results is not None:
        return results
    dets = read_json(path, "result file")
    if not isinstance(dets, list):
        raise ValueError(f"{path}: expected a JSON list of detections, got {type(dets).__name__}")
    return results_from_objects(dets, path)


def _lacking(results: Results, bit: int, index: np.ndarray, field: str, path: Path) -> None:
    missing = np.flatnonzero((results.fields[index] & bit) == 0)
    if missing.size:
        hint = " (results without masks cannot be evaluated as segm)" if field == "segmentation" else ""
        raise ValueError(f"{path}: detection {int(index[missing[0]])} lacks the field '{field}'{hint}")


def _masks(results: Results, index: np.ndarray, image: np.ndarray, gt: GroundTruth, path: Path):
    """The RLE strings of detections ``index`` (of images ``image``), sizes checked.

    Returns (text, begin, end, escaped): string i is ``text[begin[i]:end[i]]``, JSON-escaped if ``escaped``.
    """
    if results.polygons and any(int(i) in results.polygons for i in index):
        strings, sizes = [], []
        for i, img in zip(index.tolist(), image.tolist(), strict=True):
            height, width = (int(v) for v in gt.image_sizes[img])
            if i in results.polygons:
                counts, size = mask_string(results.polygons[i], height, width)
            else:
                counts = results.mask_text[results.mask_begin[i] : results.mask_end[i]].tobytes()
                size = results.mask_size[i].tolist()
            strings.append(counts)
            sizes.append(size)
        lengths = np.fromiter(map(len, strings), np.int64, len(strings))
        text = np.frombuffer(b"".join(strings), np.uint8)
        start = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        begin, end = start[:-1], start[1:]
        sizes = np.array(sizes, np.int64).reshape(-1, 2)
    else:  # the file's own buffer, not copied
        text, begin, end = results.mask_text, results.mask_begin[index], results.mask_end[index]
        sizes = results.mask_size[index]
    wrong = np.flatnonzero((sizes != gt.image_sizes[image]).any(axis=1))
    if wrong.size:
        first = int(index[wrong[0]])
        height, width = gt.image_sizes[image[wrong[0]]]
        raise ValueError(
            f"{path}: detection {first} (image_id {results.image_id[first]}) has a mask of size "
            f"{sizes[wrong[0]].tolist()}, the image is {height}x{width}"
        )
    return text, begin, end, results.mask_escaped and not results.polygons


def load_detections(
    path: str | Path,
    gt: GroundTruth,
    iou_type: str,
    max_dets: int,
    results: Results | None = None,
    dets_per_class: int | None = None,
) -> Detections:
    """Read a COCO-style result file and select what ``LVISEval`` would match, in its order.

    ``results``: the file already read by :func:`read_results` (which ``match_lvis`` does while the
    ground truth is read).  ``dets_per_class``: the fixed protocol, each category's best that many over
    the file and no per-image cap (``max_dets`` is then not used); categories with fewer are logged.
    """
    path = Path(path)
    results = read_results(path) if results is None else results
    every = np.arange(len(results.score))
    if not every.size:
        raise ValueError(f"{path}: holds no detections; LVIS evaluation needs at least one")
    for bit, field in ((IMAGE_ID, "image_id"), (CATEGORY_ID, "category_id"), (SCORE, "score")):
        _lacking(results, bit, every, field, path)
    if iou_type != "bbox":
        _lacking(results, SEGMENTATION, every, "segmentation", path)
    # Every detection is checked, also those the cap or the federated rule will drop: a NaN or a mask of
    # the wrong size anywhere means the file is not what it should be.
    _check_finite(results.score, path, results, every, "score")
    boxed = np.flatnonzero(results.fields & BBOX)
    _check_finite(results.bbox[boxed], path, results, boxed, "bbox")
    image_index, image_found = _index_of(gt.image_ids, results.image_id)
    if not image_found.all():
        first = int(np.flatnonzero(~image_found)[0])
        raise ValueError(
            f"{path}: detection {first} has image_id {results.image_id[first]}, which is not an image of "
            f"{gt.path}"
        )
    category_index, category_found = _index_of(gt.category_ids, results.category_id)
    if not category_found.all():
        first = int(np.flatnonzero(~category_found)[0])
        raise ValueError(
            f"{path}: detection {first} has category_id {results.category_id[first]}, which is not a "
            "category "
            f"of {gt.path} (a category-id mapping bug?)"
        )

    if dets_per_class is None:
        kept = _cap_per_image(image_index, results.score, len(gt.image_ids), max_dets)
    else:
        kept, counts = top_per_category(category_index, results.score, dets_per_class)
        short = gt.num_categories - int(np.sum(counts >= dets_per_class))
        if short:
            _log.warning(
                "%s: %d of the %d categories have fewer than %d detections; their AP (fixed or pooled) is "
                "underestimated unless inference wrote every detection it had for them (no per-image cap)",
                path, short, gt.num_categories, dets_per_class,
            )  # fmt: skip
    masked = np.flatnonzero((results.fields & SEGMENTATION) > 0)
    masked = masked[[int(i) not in results.polygons for i in masked]] if results.polygons else masked
    wrong = np.flatnonzero((results.mask_size[masked] != gt.image_sizes[image_index[masked]]).any(axis=1))
    if wrong.size:
        first = int(masked[wrong[0]])
        height, width = gt.image_sizes[image_index[first]]
        raise ValueError(
            f"{path}: detection {first} (image_id {results.image_id[first]}) has a mask of size "
            f"{results.mask_size[first].tolist()}, the image is {height}x{width}"
        )
    image_index, category_index, score = image_index[kept], category_index[kept], results.score[kept]
    # LVISResults decides by the first detection of its capped list: box area if it has a box, else mask area.
    has_bbox = bool(results.fields[kept[0]] & BBOX)
    masks = None
    if has_bbox:
        _lacking(results, BBOX, kept, "bbox", path)
        bbox = results.bbox[kept]
        area = bbox[:, 2] * bbox[:, 3]
    else:  # areas (and for bbox evaluation the boxes) of the masks
        _lacking(results, SEGMENTATION, kept, "segmentation", path)
        masks = _masks(results, kept, image_index, gt, path)
        counts, counts_start = rle.decode_text(*masks)
        area = rle.areas(counts, counts_start).astype(np.float64)
        bbox = np.zeros((len(kept), 4))
        if iou_type == "bbox":
            strings = [masks[0][a:b].tobytes() for a, b in zip(masks[1], masks[2], strict=True)]
            if masks[3]:
                strings = [string.replace(b"\\\\", b"\\") for string in strings]
            sizes = gt.image_sizes[image_index].tolist()
            rles = [{"size": size, "counts": c} for size, c in zip(sizes, strings, strict=True)]
            bbox = mask_utils.toBbox(rles).reshape(-1, 4)

    num_cats = gt.num_categories
    keys = image_index * num_cats + category_index
    positive_keys = np.unique(gt.ann_image * num_cats + gt.ann_category)
    selected = (area > 0) & (area < math.inf) & (np.isin(keys, gt.neg_keys) | np.isin(keys, positive_keys))
    chosen = np.flatnonzero(selected)
    mask_text = mask_begin = mask_end = None
    escaped = False
    if iou_type != "bbox":
        if masks is None:
            mask_text, mask_begin, mask_end, escaped = _masks(
                results, kept[chosen], image_index[chosen], gt, path
            )
        else:
            mask_text, mask_begin, mask_end, escaped = masks[0], masks[1][chosen], masks[2][chosen], masks[3]
    return Detections(
        image=image_index[chosen],
        category=category_index[chosen],
        score=score[chosen],
        position=chosen,
        area=area[chosen],
        bbox=bbox[chosen],
        mask_text=mask_text,
        mask_begin=mask_begin,
        mask_end=mask_end,
        mask_escaped=escaped,
        not_exhaustive=np.isin(keys[chosen], gt.not_exhaustive_keys),
    )
