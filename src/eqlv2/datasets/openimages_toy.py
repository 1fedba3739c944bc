"""The embedded dataset's OpenImages twin: its boxes as OpenImages Challenge 2019 files.

``make_toy`` calls :func:`write_openimages_twin` after the LVIS files are written, so that the
OpenImages half of the pipeline (``convert-openimages``, ``evaluate-openimages``, grouped AP) runs on the
same images.  It writes, under ``OUT/openimages/``:

* ``classes.csv`` -- headerless ``MID,DisplayName``, the evaluated classes in this order: the 48 toy
  classes (``/m/eqlv2_000`` .. ``/m/eqlv2_047``, in ``CATEGORY_NAMES`` order, so that their 1-based row
  index is the LVIS category id), then the 4 shape parents (``/m/eqlv2_048`` .. ``/m/eqlv2_051``,
  named ``circle``, ``square``, ``triangle``, ``diamond``).  The parents are evaluated, as non-leaf classes
  such as "Helmet" are in the Challenge's 500, so that hierarchy expansion matters: a parent has ground
  truth only through its children.
* ``hierarchy.json`` -- ``challenge-2019-label500-hierarchy.json``'s format: a virtual root
  (``/m/eqlv2_root``, not a class) whose ``Subcategory`` are the shapes, whose ``Subcategory`` are the
  12 classes of that shape.
* ``{train,validation}-bbox.csv`` -- ``ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf``, one row per
  box, coordinates = the LVIS box divided by the image size (clipped to [0, 1]); the ImageID is the image
  file's stem (``000000000001`` for ``train2017/000000000001.jpg``).  Boxes are always of leaf classes
  (the raw files are not expanded; the evaluator expands them).  Group-of boxes:

  - the instances of one class on one image (when there are 2 or more; only the train split has such
    images) are replaced by **one** group-of box, their union, in place of the first of them;
  - every other box is flagged group-of with probability ``GROUP_OF_SINGLE_PROB`` (a group-of box around
    one object, as OpenImages annotators also drew), so that the balanced validation split, which never
    repeats a class on an image, has group-of boxes too.

* ``images/{train,validation}`` -- relative links to ``../../train2017`` and ``../../val2017``, so that
  the twin has the layout of a real OpenImages folder (``images/<split>/<ImageID>.jpg``) without copying
  the images.
* ``{train,validation}-image-labels.csv`` -- ``ImageID,Source,LabelName,Confidence``: Confidence 1 for
  every leaf class with a box on the image, Confidence 0 (verified absent) for ``NEGATIVES_PER_IMAGE``
  absent leaf classes drawn at random and, with probability ``NEGATIVE_SHAPE_PROB``, for each shape with
  no object on the image (a negative parent, which the evaluator propagates to its 12 leaves).  Source is
  ``verification``.  Rows are grouped by image in the LVIS file's image order; within an image the
  positives come first, then the negatives, each in class-description order.

Random draws come from ``numpy.random.default_rng((seed, split, image index, 7))``, and numbers are
written with ``repr``, so one seed gives byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from eqlv2.datasets.toy import CATEGORY_NAMES, SHAPES
from eqlv2.io import atomic_write_text

ROOT_MID = "/m/eqlv2_root"
LEAF_MIDS = tuple(f"/m/eqlv2_{i:03d}" for i in range(len(CATEGORY_NAMES)))
SHAPE_MIDS = {shape: f"/m/eqlv2_{len(CATEGORY_NAMES) + i:03d}" for i, shape in enumerate(SHAPES)}
GROUP_OF_SINGLE_PROB = 0.05
NEGATIVES_PER_IMAGE = 3
NEGATIVE_SHAPE_PROB = 0.5
SPLITS = {"train": 0, "validation": 1}  # the split ids of eqlv2.datasets.toy.SPLIT_IDS
BOX_HEADER = "ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf"
LABEL_HEADER = "ImageID,Source,LabelName,Confidence"
IMAGE_FOLDERS = {"train": "train2017", "validation": "val2017"}  # the LVIS-format toy's image folders


def _shape(label: int) -> str:
    return CATEGORY_NAMES[label].split("_")[2]


def _image_stem(image: dict) -> str:
    if "file_name" in image:
        return Path(image["file_name"]).stem
    return Path(image["coco_url"]).stem


def _num(value: float) -> str:
    return repr(float(min(1.0, max(0.0, value))))


def _split_files(doc: dict, seed: int, split_id: int) -> tuple[list[str], list[str]]:
    by_image: dict[int, list[dict]] = {}
    for ann in doc["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    boxes, labels = [BOX_HEADER], [LABEL_HEADER]
    num_classes = len(CATEGORY_NAMES)
    for index, image in enumerate(doc["images"]):
        rng = np.random.default_rng([seed, split_id, index, 7])
        stem, width, height = _image_stem(image), float(image["width"]), float(image["height"])
        anns = by_image.get(image["id"], [])
        of_class: dict[int, list[dict]] = {}
        for ann in anns:
            of_class.setdefault(ann["category_id"] - 1, []).append(ann)
        for ann in anns:
            label = ann["category_id"] - 1
            same = of_class[label]
            if len(same) > 1:
                if ann is not same[0]:
                    continue  # merged into the group-of box written for the first instance
                x0 = min(a["bbox"][0] for a in same)
                y0 = min(a["bbox"][1] for a in same)
                x1 = max(a["bbox"][0] + a["bbox"][2] for a in same)
                y1 = max(a["bbox"][1] + a["bbox"][3] for a in same)
                group_of = 1
            else:
                x, y, w, h = ann["bbox"]
                x0, y0, x1, y1 = x, y, x + w, y + h
                group_of = int(rng.random() < GROUP_OF_SINGLE_PROB)
            boxes.append(
                f"{stem},{LEAF_MIDS[label]},{_num(x0 / width)},{_num(x1 / width)},"
                f"{_num(y0 / height)},{_num(y1 / height)},{group_of}"
            )
        present = sorted(of_class)
        absent = [c for c in range(num_classes) if c not in of_class]
        k = min(NEGATIVES_PER_IMAGE, len(absent))
        negatives = sorted(int(c) for c in rng.choice(absent, size=k, replace=False)) if k else []
        present_shapes = {_shape(c) for c in present}
        negative_shapes = [
            s for s in SHAPES if s not in present_shapes and rng.random() < NEGATIVE_SHAPE_PROB
        ]
        labels += [f"{stem},verification,{LEAF_MIDS[c]},1" for c in present]
        labels += [f"{stem},verification,{LEAF_MIDS[c]},0" for c in negatives]
        labels += [f"{stem},verification,{SHAPE_MIDS[s]},0" for s in negative_shapes]
    return boxes, labels


def write_openimages_twin(out_dir: str | Path, train_doc: dict, val_doc: dict, seed: int) -> dict[str, Path]:
    """Write the OpenImages twin of the LVIS documents under ``out_dir/openimages``; return the paths.

    Keys of the result: ``classes``, ``hierarchy``, ``{train,validation}_boxes``,
    ``{train,validation}_labels``, ``{train,validation}_images``.  See the module docstring.
    """
    root = Path(out_dir) / "openimages"
    written: dict[str, Path] = {}
    class_lines = [f"{mid},{name}" for mid, name in zip(LEAF_MIDS, CATEGORY_NAMES, strict=True)]
    class_lines += [f"{SHAPE_MIDS[s]},{s}" for s in SHAPES]
    written["classes"] = atomic_write_text(root / "classes.csv", "\n".join(class_lines) + "\n")
    hierarchy = {
        "LabelName": ROOT_MID,
        "Subcategory": [
            {
                "LabelName": SHAPE_MIDS[shape],
                "Subcategory": [
                    {"LabelName": LEAF_MIDS[c]} for c in range(len(CATEGORY_NAMES)) if _shape(c) == shape
                ],
            }
            for shape in SHAPES
        ],
    }
    written["hierarchy"] = atomic_write_text(root / "hierarchy.json", json.dumps(hierarchy, indent=1) + "\n")
    docs = {"train": train_doc, "validation": val_doc}
    for split, split_id in SPLITS.items():
        boxes, labels = _split_files(docs[split], seed, split_id)
        written[f"{split}_boxes"] = atomic_write_text(root / f"{split}-bbox.csv", "\n".join(boxes) + "\n")
        written[f"{split}_labels"] = atomic_write_text(
            root / f"{split}-image-labels.csv", "\n".join(labels) + "\n"
        )
    for split, folder in IMAGE_FOLDERS.items():
        link = root / "images" / split
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(Path("..", "..", folder), target_is_directory=True)
        written[f"{split}_images"] = link
    return written
