"""Datasets with the real class counts (LVIS v1: 1203, v0.5: 1230, OpenImages Challenge 2019: 500) and a
handful of tiny images, for training the real configs a couple of iterations on a CPU
(tests/test_real_configs.py).

The category statistics have the shape of the real data rather than being counted on the 4 images: LVIS
v1's 337 rare / 461 common / 405 frequent classes (v0.5's 454 / 461 / 315) with image counts in 1-10 /
11-100 / >100, and instance counts spanning BAGS's bins 10/100/1000; OpenImages instance counts with
exactly 250 classes below EQL's lambda = 1652.  That way the losses that read them (EQL, GroupSoftmax)
build their real layouts.
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
LVIS_V05_GROUPS = (("r", 454), ("c", 461), ("f", 315))  # LVIS v0.5 train
LVIS_V05_NUM_CLASSES = sum(n for _, n in LVIS_V05_GROUPS)
LVIS_V05_PRESENT = (3, 300, 454, 700, 915, 1100, 1229)


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


def _lvis_categories(groups: tuple[tuple[str, int], ...]) -> list[dict]:
    categories, cid = [], 1
    for group, count in groups:
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
    return categories


def _write_lvis(path: Path, images: list[dict], present: tuple[int, ...], groups, seed: int) -> Path:
    """The annotation file: 3 boxes (and their rectangle polygons) per image, of classes ``present``."""
    rng = np.random.default_rng(seed)
    annotations = []
    for i, image in enumerate(images):
        classes = [present[(i + k) % len(present)] + 1 for k in range(3)]
        image.update({"width": IMAGE_W, "height": IMAGE_H, "license": 1,
                      "date_captured": "2026-01-01 00:00:00", "neg_category_ids": [],
                      "not_exhaustive_category_ids": []})  # fmt: skip
        for cat, (x, y, w, h) in zip(classes, _image_boxes(rng, 3), strict=True):
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append(
                {
                    "id": len(annotations) + 1, "image_id": image["id"], "category_id": cat,
                    "segmentation": [polygon], "bbox": [x, y, w, h], "area": w * h,
                }
            )  # fmt: skip
    doc = {"info": {"description": f"eqlv2 test: {path.name}'s class list, {len(images)} images"},
           "licenses": [], "images": images, "annotations": annotations,
           "categories": _lvis_categories(groups)}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def make_lvis_v1(root: Path, seed: int = 0) -> Path:
    """``root/annotations/lvis_v1_train.json`` (LVIS v1 schema, 1203 classes) and ``root/train2017/``."""
    names = [f"{i + 1:012d}.jpg" for i in range(NUM_IMAGES)]
    images = []
    for i, name in enumerate(names):
        url = f"http://images.cocodataset.org/train2017/{name}"
        images.append({"id": i + 1, "coco_url": url, "flickr_url": url})  # v1: no file_name
    _write_images(root / "train2017", names, seed)
    return _write_lvis(root / "annotations" / "lvis_v1_train.json", images, LVIS_PRESENT, LVIS_GROUPS, seed)


def make_lvis_v05(root: Path, split: str = "train", seed: int = 0) -> Path:
    """``root/annotations/lvis_v0.5_<split>.json`` (LVIS v0.5 schema, 1230 classes) and its images under
    ``root/<split>2017/``: v0.5 names them as COCO 2014 did (``COCO_train2014_000000000001.jpg``), the
    2017 folder holds ``000000000001.jpg``, which is what mmdet's LVISV05Dataset must find."""
    ids = [i + 1 + (0 if split == "train" else 100) for i in range(NUM_IMAGES)]
    images = []
    for image_id in ids:
        url = f"http://images.cocodataset.org/{split}2017/{image_id:012d}.jpg"
        images.append({"id": image_id, "file_name": f"COCO_{split}2014_{image_id:012d}.jpg", "coco_url": url,
                       "flickr_url": url})  # fmt: skip
    _write_images(root / f"{split}2017", [f"{image_id:012d}.jpg" for image_id in ids], seed)
    path = root / "annotations" / f"lvis_v0.5_{split}.json"
    return _write_lvis(path, images, LVIS_V05_PRESENT, LVIS_V05_GROUPS, seed)


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
