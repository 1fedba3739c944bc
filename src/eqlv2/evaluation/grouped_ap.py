"""AP1..AP5 on OpenImages as the original defines them, and a parser of the official metrics file.

The original (``tools/parse_openimage_metric.py`` with ``mmdet/utils/openimage_categories.get_group_ids``)
sorts the classes by their number of training boxes, ascending, with ``np.argsort``, cuts the order into
five consecutive groups of equal size (100 each for the 500 Challenge classes) and reports each group's
plain mean AP, leaving out classes whose AP is NaN.  AP1 is the rarest group, AP5 the most frequent.

The training counts come either from the shipped table (``eqlv2/data/openimages_challenge2019_groups.json``,
the original's ``instance_count`` per class: boxes in the raw, not hierarchy-expanded, Challenge 2019
training CSV) or from a COCO-style training annotation JSON, counted the same way (one per annotation).

Differences from the original, on purpose:

* the sort is stable (ties keep class order); the original's quicksort gives the same groups for the 500
  classes, which have no tie across a group boundary;
* a class count not divisible by five gives groups whose sizes differ by one (``np.array_split``), the
  larger ones first; the original hard-coded slices of 100;
* metric lines are mapped to classes by MID, accepting both ``AP@0.5IOU/b'/m/xxx'`` (old TensorFlow, which
  printed bytes) and ``AP@0.5IOU//m/xxx`` (newer TensorFlow), where the original's parser handled only
  the first.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import numpy as np

NUM_GROUPS = 5
GROUPS_TABLE = "openimages_challenge2019_groups.json"
_MAP_LINE = re.compile(r"^\w+_Precision/mAP@0\.5IOU$")
_AP_LINE = re.compile(r"^\w+_PerformanceByCategory/AP@0\.5IOU/(?P<name>.+)$")
_BYTES_NAME = re.compile(r"^b(?P<quote>['\"])(?P<name>.*)(?P=quote)$")


def parse_metrics_file(path: str | Path) -> tuple[float, dict[str, float]]:
    """``(mAP, {MID: AP})`` from an official metrics file, in file order; NaN APs are kept as NaN."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics file {path} does not exist")
    mean = None
    per_class: dict[str, float] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.strip().rpartition(",")
        try:
            number_value = float(value)
        except ValueError:
            number_value = None
        if not sep or number_value is None:
            raise ValueError(f"{path}: line {number} is not 'NAME,VALUE': {line!r}")
        if _MAP_LINE.match(name):
            mean = number_value
            continue
        match = _AP_LINE.match(name)
        if not match:
            raise ValueError(f"{path}: line {number} is neither the mAP nor a per-class AP: {line!r}")
        mid = match["name"]
        quoted = _BYTES_NAME.match(mid)
        if quoted:
            mid = quoted["name"]
        if mid in per_class:
            raise ValueError(f"{path}: class {mid} appears twice (line {number})")
        per_class[mid] = number_value
    if mean is None:
        raise ValueError(f"{path}: no 'OpenImagesDetectionChallenge_Precision/mAP@0.5IOU' line")
    return mean, per_class


def load_groups_table() -> dict[str, int]:
    """``{MID: training instance count}`` of the 500 Challenge 2019 classes, in class-description order."""
    table = json.loads(resources.files("eqlv2.data").joinpath(GROUPS_TABLE).read_text())
    classes = [c for group in table["groups"] for c in group["classes"]]
    return {
        c["freebase_id"]: int(c["instance_count"]) for c in sorted(classes, key=lambda c: c["contiguous_id"])
    }


def counts_from_coco(
    path: str | Path, key: str = "freebase_id", mapping: Mapping[int, str] | None = None
) -> dict[str, int]:
    """``{class name: number of annotations}`` from a COCO-style training JSON, in category-id order.

    The name is ``mapping[category id]`` if a mapping is given, else the category's ``key`` field (the
    MID for an OpenImages conversion).  Categories without annotations count 0.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training annotation file {path} does not exist")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    for field in ("categories", "annotations"):
        if not isinstance(doc, dict) or field not in doc:
            raise ValueError(f"{path}: no '{field}'")
    names = {}
    for category in sorted(doc["categories"], key=lambda c: c["id"]):
        if mapping is not None:
            if category["id"] not in mapping:
                raise ValueError(f"{path}: category {category['id']} is not in the given mapping")
            names[category["id"]] = mapping[category["id"]]
        elif key not in category:
            raise ValueError(f"{path}: category {category['id']} lacks the field '{key}'")
        else:
            names[category["id"]] = str(category[key])
    counts = dict.fromkeys(names.values(), 0)
    if len(counts) != len(names):
        raise ValueError(f"{path}: two categories share a '{key}'")
    for ann in doc["annotations"]:
        if ann.get("category_id") not in names:
            raise ValueError(f"{path}: annotation {ann.get('id')} has an unknown 'category_id'")
        counts[names[ann["category_id"]]] += 1
    return counts


def assign_groups(counts: Mapping[str, int], num_groups: int = NUM_GROUPS) -> list[list[str]]:
    """Classes sorted by count, ascending (stable), cut into ``num_groups`` consecutive equal groups."""
    if len(counts) < num_groups:
        raise ValueError(f"{len(counts)} classes cannot make {num_groups} groups")
    names = list(counts)
    order = np.argsort(np.array([counts[n] for n in names]), kind="stable")
    return [[names[i] for i in part] for part in np.array_split(order, num_groups)]


def grouped_ap(
    per_class: Mapping[str, float], counts: Mapping[str, int], num_groups: int = NUM_GROUPS
) -> dict[str, dict]:
    """``{"AP1": {...}, ..., "AP5": {...}}``: each group's plain mean AP over its classes with a number.

    Each value holds ``AP`` (NaN if no class of the group has one), ``classes`` (the group's size),
    ``evaluated`` (how many of them have a non-NaN AP) and the group's training-count range.  A class in
    ``per_class`` that has no count is an error (the class sets disagree); a class without an AP in
    ``per_class`` is left out like a NaN.
    """
    unknown = [mid for mid in per_class if mid not in counts]
    if unknown:
        raise ValueError(f"class {unknown[0]} has an AP but no training count ({len(unknown)} such classes)")
    result = {}
    for index, members in enumerate(assign_groups(counts, num_groups), start=1):
        aps = [per_class[m] for m in members if m in per_class and not math.isnan(per_class[m])]
        result[f"AP{index}"] = {
            "AP": float(np.mean(aps)) if aps else math.nan,
            "classes": len(members),
            "evaluated": len(aps),
            "instance_count_min": int(min(counts[m] for m in members)),
            "instance_count_max": int(max(counts[m] for m in members)),
        }
    return result
