"""The embedded long-tailed dataset: synthetic instance segmentation in the exact LVIS v1 schema.

Why it looks the way it does (the probes are in the project's reference notes):

* Classes are shape x colour x texture.  Colour x shape alone is learnt from a handful of examples, so
  the long-tail effect never shows; sharing shapes and colours between classes and telling them apart
  by texture makes a rare class easy to confuse with a frequent sibling, as in LVIS.
* Training image counts fall log-uniformly from ``max_images_per_class`` to 1.  That gives roughly equal
  thirds of rare (1-10 images), common (11-100) and frequent (>100) classes, LVIS v1's own proportions.
  Which class gets which rank is a seeded permutation, so rare classes are not all one shape.
* The validation split is balanced (every class in ``val_images_per_class`` images) so that APr, APc
  and APf are each averaged over enough ground truth to mean something.
* Every absent class is listed in ``neg_category_ids``: the annotations are exhaustive by construction,
  so LVIS's federated evaluation counts every false positive, as COCO would.

Everything is drawn from ``numpy.random.default_rng`` streams keyed by (seed, split, image), and the
JSON is written with a fixed key order, so one seed gives byte-identical annotation files.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from eqlv2.io import atomic_write_text

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {  # RGB
    "red": (205, 55, 45),
    "green": (50, 160, 70),
    "blue": (50, 90, 205),
    "yellow": (220, 190, 50),
}
TEXTURES = ("solid", "striped", "dotted")
CATEGORY_NAMES = tuple(
    f"{colour}_{texture}_{shape}" for shape, colour, texture in itertools.product(SHAPES, COLOURS, TEXTURES)
)
COCO_URL = "http://images.cocodataset.org/{split}2017/{image_id:012d}.jpg"
SPLIT_IDS = {"train": 0, "val": 1}


@dataclass(frozen=True)
class ToySpec:
    """Size of the generated dataset.  The defaults are the embedded default configuration."""

    seed: int = 0
    num_train_images: int = 1000
    num_val_images: int = 300
    image_size: int = 128
    max_images_per_class: int = 400
    val_images_per_class: int = 10
    max_objects_per_image: int = 6
    min_object_size: int = 14
    max_object_size: int = 44
    second_instance_prob: float = 0.2


def lvis_frequency(image_count: int) -> str:
    """LVIS's rule on training image counts: rare 1-10, common 11-100, frequent above 100."""
    if image_count <= 10:
        return "r"
    if image_count <= 100:
        return "c"
    return "f"


def train_image_counts(spec: ToySpec) -> np.ndarray:
    """Training image count of each class rank: log-uniform from ``max_images_per_class`` down to 1."""
    n = len(CATEGORY_NAMES)
    exponents = np.arange(n) / (n - 1)
    return np.maximum(1, np.round(spec.max_images_per_class ** (1.0 - exponents))).astype(int)


def _class_image_counts(spec: ToySpec, rng: np.random.Generator) -> np.ndarray:
    counts_by_rank = train_image_counts(spec)
    rank_of_class = rng.permutation(len(CATEGORY_NAMES))
    counts = counts_by_rank[rank_of_class]
    groups = [lvis_frequency(int(c)) for c in counts]
    for group in "rcf":
        if groups.count(group) < 5:
            raise ValueError(
                f"toy spec gives only {groups.count(group)} classes in frequency group '{group}' "
                f"(need at least 5): raise max_images_per_class (now {spec.max_images_per_class})"
            )
    if counts.max() > spec.num_train_images:
        raise ValueError(
            f"max_images_per_class={spec.max_images_per_class} exceeds "
            f"num_train_images={spec.num_train_images}"
        )
    return counts


def _assign_classes(
    counts: np.ndarray, num_images: int, cap: int, rng: np.random.Generator
) -> list[list[int]]:
    """Put class ``k`` into ``counts[k]`` distinct images, never more than ``cap`` classes per image."""
    contents: list[list[int]] = [[] for _ in range(num_images)]
    load = np.zeros(num_images, dtype=int)
    for label in np.argsort(-counts, kind="stable"):
        free = np.flatnonzero(load < cap)
        if len(free) < counts[label]:
            raise ValueError(
                f"{num_images} images with at most {cap} objects cannot hold {counts[label]} "
                f"images of class {CATEGORY_NAMES[label]}"
            )
        # Prefer emptier images so that objects spread out instead of piling up.
        weights = (cap - load[free]).astype(float)
        chosen = rng.choice(free, size=int(counts[label]), replace=False, p=weights / weights.sum())
        for image_index in chosen:
            contents[image_index].append(int(label))
            load[image_index] += 1
    return contents


def _texture(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB patch of the class's colour and texture (float32, H x W x 3)."""
    name = CATEGORY_NAMES[label]
    colour_name, texture, _ = name.split("_")
    base = np.array(COLOURS[colour_name], dtype=np.float32) + rng.uniform(-18, 18, 3)
    patch = np.empty((size, size, 3), dtype=np.float32)
    patch[:] = base
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(5.0, 7.0)
    if texture == "striped":
        angle = rng.uniform(0, np.pi)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        patch[(phase % 1.0) < 0.45] *= 0.4
    elif texture == "dotted":
        offset = rng.uniform(0, period, 2)
        dy = ((yy + offset[0]) % period) - period / 2
        dx = ((xx + offset[1]) % period) - period / 2
        patch[dx**2 + dy**2 < (period * 0.28) ** 2] *= 0.4
    patch += rng.normal(0, 6, patch.shape)
    return patch


def _shape_mask(label: int, box: tuple[int, int, int], image_size: int) -> np.ndarray:
    shape = CATEGORY_NAMES[label].split("_")[2]
    x, y, s = box
    mask = np.zeros((image_size, image_size), dtype=np.uint8)
    if shape == "circle":
        cv2.circle(mask, (x + s // 2, y + s // 2), s // 2, 1, -1)
    elif shape == "square":
        cv2.rectangle(mask, (x, y), (x + s - 1, y + s - 1), 1, -1)
    elif shape == "triangle":
        pts = np.array([[x + s // 2, y], [x, y + s - 1], [x + s - 1, y + s - 1]], dtype=np.int32)
        cv2.fillPoly(mask, [pts], 1)
    else:  # diamond
        h = s // 2
        pts = np.array([[x + h, y], [x + s - 1, y + h], [x + h, y + s - 1], [x, y + h]], dtype=np.int32)
        cv2.fillPoly(mask, [pts], 1)
    return mask


def _box_iou(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[2], b[1] + b[2]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] ** 2 + b[2] ** 2 - inter)


def _polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def _render_image(
    labels: list[int], spec: ToySpec, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict]]:
    """Draw one image; return it (BGR uint8) and its instances (label, polygons, bbox, area)."""
    size = spec.image_size
    for _attempt in range(50):
        canvas = np.full((size, size, 3), rng.uniform(95, 160), dtype=np.float32)
        # Low-contrast clutter so that "anything coloured is an object" is not a usable rule.
        for _ in range(int(rng.integers(2, 6))):
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            axes = tuple(int(v) for v in rng.integers(4, 18, 2))
            tone = float(rng.uniform(-25, 25))
            blob = np.zeros((size, size), dtype=np.uint8)
            cv2.ellipse(blob, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
            canvas[blob.astype(bool)] += tone
        canvas += rng.normal(0, 10, canvas.shape)

        boxes: list[tuple[int, int, int]] = []
        for _ in labels:
            for _try in range(30):
                s = int(rng.integers(spec.min_object_size, spec.max_object_size + 1))
                x, y = (int(v) for v in rng.integers(0, size - s + 1, 2))
                if all(_box_iou((x, y, s), other) < 0.25 for other in boxes):
                    break
            boxes.append((x, y, s))

        full_masks = [_shape_mask(label, box, size) for label, box in zip(labels, boxes, strict=True)]
        visible = [m.copy() for m in full_masks]
        for i in range(len(visible)):
            for later in full_masks[i + 1 :]:
                visible[i][later.astype(bool)] = 0
        if any(v.sum() < 0.5 * f.sum() for v, f in zip(visible, full_masks, strict=True)):
            continue  # an object is mostly hidden: draw the image again

        instances = []
        for label, box, full, vis in zip(labels, boxes, full_masks, visible, strict=True):
            x, y, s = box
            patch = _texture(label, s, rng)
            region = canvas[y : y + s, x : x + s]
            inside = full[y : y + s, x : x + s].astype(bool)
            region[inside] = patch[inside]
            polygons = _polygons(vis)
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, size, size))
            instances.append(
                {
                    "label": label,
                    "segmentation": [[round(v, 2) for v in p] for p in polygons],
                    "bbox": [round(float(v), 2) for v in mask_utils.toBbox(rle)],
                    "area": round(float(mask_utils.area(rle)), 2),
                }
            )
        rgb = np.clip(canvas, 0, 255).astype(np.uint8)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), instances
    raise RuntimeError("could not place the objects of a toy image in 50 attempts")


def _split_contents(
    split: str, spec: ToySpec, counts: np.ndarray, rng: np.random.Generator
) -> list[list[int]]:
    if split == "train":
        contents = _assign_classes(counts, spec.num_train_images, spec.max_objects_per_image, rng)
        # Some images hold a second instance of a class (LVIS's instance_count > image_count).
        for labels in contents:
            if labels and len(labels) < spec.max_objects_per_image:
                if rng.random() < spec.second_instance_prob:
                    labels.append(labels[int(rng.integers(len(labels)))])
        return contents
    balanced = np.full(len(CATEGORY_NAMES), spec.val_images_per_class)
    return _assign_classes(balanced, spec.num_val_images, spec.max_objects_per_image, rng)


def _iter_split(split: str, spec: ToySpec, contents: list[list[int]]) -> Iterator[tuple]:
    for index, labels in enumerate(contents):
        image_id = SPLIT_IDS[split] * 1_000_000 + index + 1
        rng = np.random.default_rng([spec.seed, SPLIT_IDS[split], index])
        order = rng.permutation(len(labels))
        image, instances = _render_image([labels[i] for i in order], spec, rng)
        yield image_id, image, instances


def make_toy(out_dir: str | Path, spec: ToySpec = ToySpec()) -> dict[str, Path]:
    """Write images and ``annotations/lvis_v1_{train,val}.json`` under ``out_dir``.

    The annotation files are written last and atomically, so their presence means the split is complete.
    Their OpenImages twin (``out_dir/openimages``, see ``eqlv2.datasets.openimages_toy``) follows them.
    """
    out_dir = Path(out_dir)
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([spec.seed, 99])
    counts = _class_image_counts(spec, rng)
    num_classes = len(CATEGORY_NAMES)

    split_data: dict[str, tuple[list[dict], list[dict]]] = {}
    for split in ("train", "val"):
        contents = _split_contents(split, spec, counts, rng)
        (out_dir / f"{split}2017").mkdir(exist_ok=True)
        images, annotations = [], []
        for image_id, image, instances in _iter_split(split, spec, contents):
            url = COCO_URL.format(split=split, image_id=image_id)
            path = out_dir / url.removeprefix("http://images.cocodataset.org/")
            if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f"could not write {path}")
            present = sorted({inst["label"] + 1 for inst in instances})
            images.append(
                {
                    "id": image_id,
                    "width": spec.image_size,
                    "height": spec.image_size,
                    "license": 1,
                    "coco_url": url,
                    "flickr_url": url,
                    "date_captured": "2026-01-01 00:00:00",
                    "neg_category_ids": [c for c in range(1, num_classes + 1) if c not in present],
                    "not_exhaustive_category_ids": [],
                }
            )
            for inst in instances:
                annotations.append(
                    {
                        "id": len(annotations) + 1 + SPLIT_IDS[split] * 10_000_000,
                        "image_id": image_id,
                        "category_id": inst["label"] + 1,
                        "segmentation": inst["segmentation"],
                        "bbox": inst["bbox"],
                        "area": inst["area"],
                    }
                )
        split_data[split] = (images, annotations)

    train_images, train_anns = split_data["train"]
    image_count = np.zeros(num_classes, dtype=int)
    instance_count = np.zeros(num_classes, dtype=int)
    for ann in train_anns:
        instance_count[ann["category_id"] - 1] += 1
    for cat_ids in {(a["image_id"], a["category_id"]) for a in train_anns}:
        image_count[cat_ids[1] - 1] += 1
    categories = [
        {
            "id": label + 1,
            "name": name,
            "synset": f"{name}.n.01",
            "synonyms": [name],
            "def": f"a {name.replace('_', ' ')} drawn by eqlv2 make-toy",
            "frequency": lvis_frequency(int(image_count[label])),
            "image_count": int(image_count[label]),
            "instance_count": int(instance_count[label]),
        }
        for label, name in enumerate(CATEGORY_NAMES)
    ]
    written = {}
    docs = {}
    for split, (images, annotations) in split_data.items():
        doc = {
            "info": {
                "description": "eqlv2 embedded long-tailed toy dataset (LVIS v1 schema)",
                "version": "1.0",
                "seed": spec.seed,
            },
            "licenses": [{"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/"}],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        path = out_dir / "annotations" / f"lvis_v1_{split}.json"
        atomic_write_text(path, json.dumps(doc, separators=(",", ":")))
        written[split] = path
        docs[split] = doc
    from eqlv2.datasets.openimages_toy import write_openimages_twin  # it imports this module

    write_openimages_twin(out_dir, docs["train"], docs["val"], spec.seed)  # after the LVIS files
    return written
