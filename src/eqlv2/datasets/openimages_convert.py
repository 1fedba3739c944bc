"""OpenImages Challenge 2019 CSVs to a COCO-style training JSON, without the third-party converter's losses.

The original project ran bethgelab's ``openimages2coco``; that script drops the first image-level label
row and never copies ``IsGroupOf`` (see the reference notes, section 8).  This one keeps both:

* ``categories``: one per row of the headerless ``MID,DisplayName`` class file, in its order, with
  ``id`` = row index + 1, ``name``, ``freebase_id``, and ``image_count`` / ``instance_count`` counted on
  the box file as given (not hierarchy-expanded; a group-of box is one instance), which EQL's
  ``frequency='instance'`` mode and the grouped AP need.
* ``images``: every ImageID of the box or the label file, sorted, with ``id`` = 1-based position
  (integer, which faster-coco-eval needs), ``file_name`` = ``<ImageID>.jpg``, ``openimages_id`` = the
  ImageID, ``width`` / ``height`` from the sizes CSV (``image_id,image_w,image_h``, bethgelab's format) or
  else from the image file's header, and ``pos_category_ids`` / ``neg_category_ids`` from the image-level
  labels with Confidence 1 / 0 (every row, the first included).
* ``annotations``: one per box row, in the file's order, ``id`` = 1-based row number, ``image_id``,
  ``category_id``, ``freebase_id``, ``bbox`` = ``[XMin*W, YMin*H, (XMax-XMin)*W, (YMax-YMin)*H]`` in
  pixels (not rounded), ``area`` = w*h, ``iscrowd`` 0 and ``isgroupof`` 0/1.

A missing column, an unknown MID, a Confidence other than 0/1 or an image without a size is a ValueError
naming the file and the column.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from eqlv2.evaluation.openimages import BOX_COLUMNS, LABEL_COLUMNS, read_table
from eqlv2.io import atomic_write_text

SIZE_COLUMNS = ("image_id", "image_w", "image_h")


def _read_class_rows(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"class description file {path} does not exist")
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not row[0].strip():
                continue
            mid = row[0].strip()
            if len(row) < 2:
                raise ValueError(f"{path}: line {number} has no display name (expected 'MID,DisplayName')")
            if mid in seen:
                raise ValueError(f"{path}: MID '{mid}' on line {number} appears twice")
            seen.add(mid)
            rows.append((mid, ",".join(row[1:]).strip()))
    if not rows:
        raise ValueError(f"{path}: no classes (expected lines 'MID,DisplayName')")
    return rows


def _category_ids(values, category_of: dict[str, int], path: Path, classes_path: Path) -> np.ndarray:
    ids = np.array([category_of.get(v, 0) for v in values], dtype=np.int64)
    if (ids == 0).any():
        row = int(np.flatnonzero(ids == 0)[0])
        raise ValueError(
            f"{path}: column 'LabelName' holds '{values[row]}' on data row {row + 1}, "
            f"not a MID of {classes_path}"
        )
    return ids


def _read_sizes(path: Path) -> dict[str, tuple[int, int]]:
    if not path.is_file():
        raise FileNotFoundError(f"image size file {path} does not exist")
    sizes: dict[str, tuple[int, int]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for column in SIZE_COLUMNS:
            if column not in (reader.fieldnames or ()):
                header = ",".join(reader.fieldnames or ())
                raise ValueError(f"{path}: missing column '{column}' (header: {header})")
        for number, row in enumerate(reader, start=1):
            try:
                sizes[row["image_id"]] = (int(row["image_w"]), int(row["image_h"]))
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"{path}: columns 'image_w'/'image_h' on data row {number} are not integers"
                ) from err
    return sizes


def _image_size(images_dir: Path, image_id: str) -> tuple[int, int]:
    path = images_dir / f"{image_id}.jpg"
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist (give --sizes to read sizes from a CSV)")
    with Image.open(path) as image:  # reads the header only
        return image.size


def convert_openimages(
    boxes_csv: str | Path,
    labels_csv: str | Path,
    classes_csv: str | Path,
    images_dir: str | Path,
    out_json: str | Path,
    sizes_csv: str | Path | None = None,
) -> dict:
    """Write the COCO-style JSON described in the module docstring to ``out_json``; return it."""
    boxes_csv, labels_csv, classes_csv = Path(boxes_csv), Path(labels_csv), Path(classes_csv)
    classes = _read_class_rows(classes_csv)
    category_of = {mid: i + 1 for i, (mid, _) in enumerate(classes)}
    boxes = read_table(boxes_csv, BOX_COLUMNS, "box file")
    labels = read_table(labels_csv, LABEL_COLUMNS, "image-level label file")
    box_cats = _category_ids(boxes["LabelName"].tolist(), category_of, boxes_csv, classes_csv)
    label_cats = _category_ids(labels["LabelName"].tolist(), category_of, labels_csv, classes_csv)
    confidence = labels["Confidence"].to_numpy()
    bad = (confidence != 0) & (confidence != 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{labels_csv}: column 'Confidence' holds {confidence[row]:g} on data row {row + 1}, not 0 or 1"
        )

    image_names = sorted(set(boxes["ImageID"]) | set(labels["ImageID"]))
    image_index = {name: i + 1 for i, name in enumerate(image_names)}
    if sizes_csv is not None:
        sizes = _read_sizes(Path(sizes_csv))
        missing = [name for name in image_names if name not in sizes]
        if missing:
            raise ValueError(f"{sizes_csv}: column 'image_id' has no row for image '{missing[0]}'")
    else:
        sizes = {name: _image_size(Path(images_dir), name) for name in image_names}

    positives: dict[str, set[int]] = {name: set() for name in image_names}
    negatives: dict[str, set[int]] = {name: set() for name in image_names}
    for name, cat, conf in zip(labels["ImageID"].tolist(), label_cats.tolist(), confidence, strict=True):
        (positives if conf == 1 else negatives)[name].add(cat)
    images = [
        {
            "id": image_index[name],
            "file_name": f"{name}.jpg",
            "openimages_id": name,
            "width": sizes[name][0],
            "height": sizes[name][1],
            "pos_category_ids": sorted(positives[name]),
            "neg_category_ids": sorted(negatives[name]),
        }
        for name in image_names
    ]

    annotations = []
    coords = boxes[["XMin", "XMax", "YMin", "YMax"]].to_numpy(dtype=float)
    group_of = boxes["IsGroupOf"].to_numpy() != 0
    for row, (name, cat) in enumerate(zip(boxes["ImageID"].tolist(), box_cats.tolist(), strict=True)):
        width, height = sizes[name]
        xmin, xmax, ymin, ymax = coords[row]
        w, h = (xmax - xmin) * width, (ymax - ymin) * height
        annotations.append(
            {
                "id": row + 1,
                "image_id": image_index[name],
                "category_id": cat,
                "freebase_id": classes[cat - 1][0],
                "bbox": [xmin * width, ymin * height, w, h],
                "area": w * h,
                "iscrowd": 0,
                "isgroupof": int(group_of[row]),
            }
        )

    instance_count = np.bincount(box_cats, minlength=len(classes) + 1)
    image_pairs = {(a["image_id"], a["category_id"]) for a in annotations}
    image_count = np.bincount([c for _, c in image_pairs], minlength=len(classes) + 1)
    categories = [
        {
            "id": i + 1,
            "name": name,
            "freebase_id": mid,
            "image_count": int(image_count[i + 1]),
            "instance_count": int(instance_count[i + 1]),
        }
        for i, (mid, name) in enumerate(classes)
    ]
    doc = {
        "info": {"description": f"converted by eqlv2 convert-openimages from {boxes_csv.name}"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    atomic_write_text(out_json, json.dumps(doc, separators=(",", ":")))
    return doc
