"""Datasets with the real class counts (LVIS v1: 1203, OpenImages Challenge 2019: 500) and a handful of
tiny images, for training the real configs a couple of iterations on a CPU (tests/test_real_configs.py).

The category statistics have the shape of the real data rather than being counted on the 4 images: LVIS
v1's 337 rare / 461 common / 405 frequent classes with image counts in 1-10 / 11-100 / >100, and instance
counts spanning BAGS's bins 10/100/1000; OpenImages instance counts with exactly 250 classes below EQL's
lambda = 1652.  That way the losses that read them (EQL, GroupSoftmax) build their real layouts.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

LVIS_GROUPS = (("r", 337), ("c", 461), ("f", 405))  # LVIS v1 train
LVIS_NUM_CLASSES = sum(n for _, n in LVIS_GROUPS)
OI_NUM_CLASSES = 500
IMAGE_W, IMAGE_H = 200, 150  # landscape: mmdet's aspect-ratio batching puts the 4 images in 2 batches
NUM_IMAGES = 4
# Classes present in the images: some of each LVIS frequency group.
LVIS_PRESENT = (3, 150, 400, 700, 900, 1100, 1202)


def _image_boxes(rng: np.random.Generator, n: int) -> list[list[float]]:
    boxes = []
    for _ in range(n):
        w, h = rng.integers(40, 90), rng.integers(40, 70)
        x, y = rng.integers(0, IMAGE_W - w), rng.integers(0, IMAGE_H - h)
        boxes.append([float(x), float(y), float(w), float(h)])
    return boxes


def _write_images(folder: Path, names: list[str], seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        image = rng.integers(0, 255, (IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
        if not cv2.imwrite(str(folder / name), image):
            raise OSError(f"could not write {folder / name}")


def make_lvis_v1(root: Path, seed: int = 0) -> Path:
    """``root/annotations/lvis_v1_train.json`` (LVIS v1 schema, 1203 classes) and ``root/train2017/``."""
    rng = np.random.default_rng(seed)
    categories, cid = [], 1
    for group, count in LVIS_GROUPS:
        for i in range(count):
            image_count = {"r": 1 + i % 10, "c": 11 + i % 90, "f": 101 + 7 * i}[group]
            categories.append(
                {
                    "id": cid, "name": f"lvis_class_{cid:04d}", "synset": f"lvis_class_{cid:04d}.n.01",
                    "synonyms": [f"lvis_class_{cid:04d}"], "def": "generated", "frequency": group,
                    "image_count": image_count, "instance_count": image_count * (1 + i % 3),
                }
            )  # fmt: skip
            cid += 1
    images, annotations = [], []
    names = [f"{i + 1:012d}.jpg" for i in range(NUM_IMAGES)]
    for i, name in enumerate(names):
        url = f"http://images.cocodataset.org/train2017/{name}"
        present = [LVIS_PRESENT[(i + k) % len(LVIS_PRESENT)] + 1 for k in range(3)]
        images.append(
            {
                "id": i + 1, "width": IMAGE_W, "height": IMAGE_H, "license": 1, "coco_url": url,
                "flickr_url": url, "date_captured": "2026-01-01 00:00:00",
                "neg_category_ids": [], "not_exhaustive_category_ids": [],
            }
        )  # fmt: skip
        for cat, (x, y, w, h) in zip(present, _image_boxes(rng, 3), strict=True):
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append(
                {
                    "id": len(annotations) + 1, "image_id": i + 1, "category_id": cat,
                    "segmentation": [polygon], "bbox": [x, y, w, h], "area": w * h,
                }
            )  # fmt: skip
    _write_images(root / "train2017", names, seed)
    doc = {"info": {"description": "eqlv2 test: LVIS v1 class list, 4 images"}, "licenses": [],
           "images": images, "annotations": annotations, "categories": categories}  # fmt: skip
    path = root / "annotations" / "lvis_v1_train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def make_openimages(root: Path, seed: int = 1) -> Path:
    """``root/annotations/train.json`` (the COCO-style JSON of ``eqlv2 convert-openimages``, 500 classes)
    and ``root/images/train/``."""
    rng = np.random.default_rng(seed)
    categories = [
        {
            "id": i + 1, "name": f"oi_class_{i + 1:03d}", "freebase_id": f"/m/test{i + 1:03d}",
            "image_count": max(1, round(1652 ** (2 * i / (OI_NUM_CLASSES - 1))) // 2),
            "instance_count": round(1652 ** (2 * i / (OI_NUM_CLASSES - 1))),
        }
        for i in range(OI_NUM_CLASSES)
    ]  # fmt: skip
    names = [f"{i:016x}.jpg" for i in range(NUM_IMAGES)]
    images, annotations = [], []
    for i, name in enumerate(names):
        images.append({"id": i + 1, "file_name": name, "openimages_id": name[:-4], "width": IMAGE_W,
                       "height": IMAGE_H, "pos_category_ids": [], "neg_category_ids": []})  # fmt: skip
        for k, (x, y, w, h) in enumerate(_image_boxes(rng, 3)):
            cat = (37 * i + 151 * k) % OI_NUM_CLASSES + 1
            annotations.append(
                {
                    "id": len(annotations) + 1, "image_id": i + 1, "category_id": cat,
                    "freebase_id": f"/m/test{cat:03d}", "bbox": [x, y, w, h], "area": w * h,
                    "iscrowd": 0, "isgroupof": 0,
                }
            )  # fmt: skip
    _write_images(root / "images" / "train", names, seed)
    doc = {"info": {"description": "eqlv2 test: OpenImages class list, 4 images"}, "images": images,
           "annotations": annotations, "categories": categories}  # fmt: skip
    path = root / "annotations" / "train.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path
