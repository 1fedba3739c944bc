"""The per-class results of every method in one table: ``results/<dataset>/per_class_ap.csv``.

``eqlv2 evaluate-lvis --per-class`` writes one CSV per method and IoU type, a row per category of the
validation file.  Long-tail results are read per class against how often the class was seen in training,
so the join takes the counts from the *training* annotation file (the validation file's categories need
not carry them) and puts every method's mask and box AP side by side: one row a class, one column a
method and IoU type.  AP is in percent, as in the paper table; a class without validation ground truth
(the evaluator's -1) is left empty rather than scored 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from eqlv2.evaluation.lvis_inputs import read_json

PER_CLASS_COLUMNS = ("category_id", "name", "frequency", "image_count", "instance_count", "AP")
IOU_COLUMNS = {"segm": "AP", "bbox": "AP (box)"}  # the suffix of a method's column


def read_per_class(path: str | Path) -> pd.DataFrame:
    """One ``--per-class`` CSV, checked: its columns, one row per category id, AP in [0, 1] or -1."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"per-class file {path} does not exist")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not a per-class CSV ({err})") from None
    missing = [c for c in PER_CLASS_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} of eqlv2 evaluate-lvis --per-class")
    duplicated = frame["category_id"][frame["category_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{path}: category_id {int(duplicated.iloc[0])} appears twice")
    ap = pd.to_numeric(frame["AP"], errors="coerce")
    bad = frame["category_id"][ap.isna() | ~((ap == -1) | ap.between(0, 1))]
    if len(bad):
        raise ValueError(f"{path}: category_id {int(bad.iloc[0])} has AP {frame['AP'][bad.index[0]]!r}")
    return frame


def training_counts(train_ann: str | Path) -> pd.DataFrame:
    """``category_id``, ``train_image_count``, ``train_instance_count`` of a training annotation file."""
    doc = read_json(train_ann, "training annotation file")
    categories = doc.get("categories") if isinstance(doc, dict) else None
    if not isinstance(categories, list):
        raise ValueError(f"{train_ann}: field 'categories' is missing or not a list")
    rows = []
    for category in categories:
        for field in ("id", "image_count", "instance_count"):
            if field not in category:
                raise ValueError(f"{train_ann}: category {category.get('id', '?')} lacks the field '{field}'")
        rows.append((category["id"], category["image_count"], category["instance_count"]))
    return pd.DataFrame(rows, columns=["category_id", "train_image_count", "train_instance_count"])


def join_per_class(
    files: Mapping[str, Mapping[str, str | Path | Sequence[str | Path]]], train_ann: str | Path
) -> pd.DataFrame:
    """``files[method][iou_type]`` (iou_type ``segm`` or ``bbox``) joined into one frame, methods in order.

    A method trained with several seeds names one file per seed, and its column is their mean per class.
    Every file must list the same categories (the same validation file): anything else means the methods
    were evaluated on different data, which this table must not hide.  Every category must be in the
    training file.
    """
    if not files:
        raise ValueError("no per-class files to join")
    frame = None
    first = None
    for method, by_iou in files.items():
        for iou_type, paths in by_iou.items():
            seeds = []
            for path in [paths] if isinstance(paths, (str, Path)) else paths:
                if iou_type not in IOU_COLUMNS:
                    raise ValueError(f"{path}: iou type {iou_type!r} is not one of {', '.join(IOU_COLUMNS)}")
                classes = read_per_class(path).sort_values("category_id", kind="stable")
                if frame is None:
                    first = path
                    frame = classes[["category_id", "name", "frequency"]].reset_index(drop=True)
                elif list(classes["category_id"]) != list(frame["category_id"]):
                    raise ValueError(f"{path}: its categories differ from those of {first}")
                seeds.append(classes["AP"].to_numpy(dtype=float))
            ap = np.vstack(seeds)
            scored = (ap >= 0).all(axis=0)  # -1 (no ground truth) is the same for every seed
            frame[f"{method} {IOU_COLUMNS[iou_type]}"] = [
                100 * v if ok else None for v, ok in zip(ap.mean(axis=0), scored, strict=True)
            ]
    counts = training_counts(train_ann)
    unknown = sorted(set(frame["category_id"]) - set(counts["category_id"]))
    if unknown:
        raise ValueError(f"{train_ann}: category_id {unknown[0]} of {first} is not in the training file")
    joined = frame.merge(counts, on="category_id", how="left", validate="one_to_one")
    leading = ["category_id", "name", "frequency", "train_image_count", "train_instance_count"]
    return joined[leading + [c for c in joined.columns if c not in leading]]
