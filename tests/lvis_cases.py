"""Seeded LVIS-format evaluation cases with everything that makes LVIS evaluation subtle.

Used by the parity tests (small cases) and by ``benchmarks/lvis_eval.py`` (an LVIS-scale case).  A case
has: images of several sizes, some without ground truth and some without detections; rare, common and
frequent categories; per-image negative and not-exhaustive category lists; degenerate ground truth (zero
width or height, area 0, which ``LVISEval`` drops, and zero-width boxes of positive area, which it keeps);
detections that are jittered copies of the ground truth, of negative categories and of categories the
image says nothing about; images with more detections than the cap; tied scores; masks as compressed RLE.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils


@dataclass
class CaseSize:
    images: int = 60
    categories: int = 40
    dets_per_image: int = 60
    crowded_fraction: float = 0.1  # images with about 1.5x the cap in detections
    max_dets: int = 300


def _polygon(x: float, y: float, w: float, h: float) -> list[float]:
    """An octagon inscribed in the box, so masks and boxes differ."""
    cx, cy, rx, ry = x + w / 2, y + h / 2, w / 2, h / 2
    angles = np.arange(8) * np.pi / 4 + np.pi / 8
    points = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1)
    return points.ravel().round(2).tolist()


def _rle(polygon: list[float], height: int, width: int) -> dict:
    rle = mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def make_case(seed: int, size: CaseSize | None = None, with_masks: bool = True) -> tuple[dict, list[dict]]:
    """An LVIS-format annotation dict and a COCO-style result list (with masks if ``with_masks``)."""
    size = size or CaseSize()
    rng = np.random.default_rng(seed)
    num_cats = size.categories
    category_ids = rng.permutation(np.arange(1, 3 * num_cats))[:num_cats] + 1
    letters = rng.choice(list("rcf"), num_cats, p=[0.3, 0.4, 0.3])
    categories = [
        {"id": int(c), "name": f"c{c}", "frequency": str(f), "synset": f"s{c}", "image_count": 1,
         "instance_count": 1}
        for c, f in zip(category_ids, letters, strict=True)
    ]  # fmt: skip
    popularity = 1.0 / np.arange(1, num_cats + 1) ** 0.8
    popularity /= popularity.sum()

    images, annotations, results = [], [], []
    image_ids = rng.permutation(np.arange(1, 10 * size.images))[: size.images] + 7
    for image_id in image_ids:
        height, width = int(rng.integers(200, 641)), int(rng.integers(200, 641))
        has_gt = rng.random() > 0.08
        positives = (
            rng.choice(category_ids, size=min(num_cats, int(rng.integers(1, 8))), replace=False, p=popularity)
            if has_gt
            else np.array([], int)
        )
        others = np.setdiff1d(category_ids, positives)
        negatives = rng.choice(others, size=min(len(others), int(rng.integers(0, 8))), replace=False)
        not_exhaustive = positives[rng.random(len(positives)) < 0.25]
        images.append({"id": int(image_id), "height": height, "width": width,
                       "neg_category_ids": sorted(int(c) for c in negatives),
                       "not_exhaustive_category_ids": sorted(int(c) for c in not_exhaustive)})  # fmt: skip
        boxes = []
        for category in positives:
            for _ in range(int(rng.integers(1, 6))):
                w = float(rng.uniform(4, width / 2))
                h = float(rng.uniform(4, height / 2))
                x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
                polygon = _polygon(x, y, w, h)
                area = float(mask_utils.area(_rle(polygon, height, width)))
                kind = rng.random()
                if kind < 0.04:  # degenerate box, area 0: LVISEval drops it
                    w, area = 0.0, 0.0
                elif kind < 0.07:  # degenerate box of positive area: kept, overlaps nothing
                    h = 0.0
                annotations.append({"id": len(annotations) + 1, "image_id": int(image_id),
                                    "category_id": int(category), "bbox": [x, y, w, h], "area": area,
                                    "segmentation": [polygon]})  # fmt: skip
                boxes.append((int(category), x, y, max(w, 1.0), max(h, 1.0)))
        if rng.random() < 0.06:
            continue  # an image without detections
        count = int(rng.poisson(size.dets_per_image))
        if rng.random() < size.crowded_fraction:
            count = int(size.max_dets * 1.5)
        for _ in range(count):
            kind = rng.random()
            if boxes and kind < 0.5:
                category, x, y, w, h = boxes[int(rng.integers(len(boxes)))]
                if rng.random() < 0.1:
                    category = int(rng.choice(category_ids))
                x, y = x + rng.normal(0, w / 8), y + rng.normal(0, h / 8)
                w, h = w * rng.uniform(0.7, 1.3), h * rng.uniform(0.7, 1.3)
            else:
                pool = negatives if (len(negatives) and kind < 0.8) else category_ids
                category = int(rng.choice(pool))
                w, h = float(rng.uniform(2, width / 2)), float(rng.uniform(2, height / 2))
                x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
            x, y = float(np.clip(x, 0, width - 2)), float(np.clip(y, 0, height - 2))
            w, h = float(min(w, width - x)), float(min(h, height - y))
            score = float(rng.random())
            if rng.random() < 0.2:
                score = round(score, 1)  # ties, within and across images
            det = {"image_id": int(image_id), "category_id": int(category), "bbox": [x, y, w, h],
                   "score": score}  # fmt: skip
            if with_masks:
                det["segmentation"] = _rle(_polygon(x, y, w, h), height, width)
            results.append(det)
    order = rng.permutation(len(results))  # result files need not be grouped by image
    results = [results[i] for i in order]
    gt = {"images": images, "categories": categories, "annotations": annotations}
    return gt, results


def write_case(directory: Path, gt: dict, results: list[dict], name: str = "case") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    gt_path, dt_path = directory / f"{name}_gt.json", directory / f"{name}_dt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(results))
    return gt_path, dt_path
