"""The embedded dataset: deterministic, in the LVIS v1 schema, and long-tailed by LVIS's own rule."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from eqlv2.datasets.toy import CATEGORY_NAMES, ToySpec, lvis_frequency, make_toy

from .conftest import SMALL_SPEC


def _load(root, split):
    return json.loads((root / "annotations" / f"lvis_v1_{split}.json").read_text())


def test_same_seed_gives_byte_identical_annotations(small_toy, tmp_path):
    make_toy(tmp_path, SMALL_SPEC)
    for split in ("train", "val"):
        name = f"annotations/lvis_v1_{split}.json"
        assert (tmp_path / name).read_bytes() == (small_toy / name).read_bytes()


def test_another_seed_gives_another_dataset(small_toy, tmp_path):
    spec = ToySpec(**{**SMALL_SPEC.__dict__, "seed": SMALL_SPEC.seed + 1})
    make_toy(tmp_path, spec)
    assert (tmp_path / "annotations/lvis_v1_train.json").read_bytes() != (
        small_toy / "annotations/lvis_v1_train.json"
    ).read_bytes()


@pytest.mark.parametrize("split", ["train", "val"])
def test_lvis_v1_schema(small_toy, split):
    doc = _load(small_toy, split)
    assert set(doc) >= {"info", "licenses", "images", "annotations", "categories"}
    for image in doc["images"]:
        assert set(image) >= {"id", "width", "height", "coco_url", "neg_category_ids",
                              "not_exhaustive_category_ids"}  # fmt: skip
        assert "file_name" not in image  # LVIS v1 has only coco_url
        assert image["coco_url"].startswith(f"http://images.cocodataset.org/{split}2017/")
        relative = image["coco_url"].removeprefix("http://images.cocodataset.org/")
        pixels = cv2.imread(str(small_toy / relative))
        assert pixels.shape == (image["height"], image["width"], 3)
    for cat in doc["categories"]:
        assert set(cat) >= {"id", "name", "synset", "frequency", "image_count", "instance_count"}
    for ann in doc["annotations"]:
        assert set(ann) >= {"id", "image_id", "category_id", "segmentation", "bbox", "area"}
        assert all(len(poly) >= 6 and len(poly) % 2 == 0 for poly in ann["segmentation"])
    assert len({a["id"] for a in doc["annotations"]}) == len(doc["annotations"])


def test_boxes_and_areas_agree_with_the_polygons(small_toy):
    doc = _load(small_toy, "val")
    sizes = {im["id"]: (im["height"], im["width"]) for im in doc["images"]}
    for ann in doc["annotations"][:100]:
        h, w = sizes[ann["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w))
        assert ann["area"] == pytest.approx(float(mask_utils.area(rle)), abs=0.01)
        assert ann["bbox"] == pytest.approx(mask_utils.toBbox(rle).tolist(), abs=0.01)
        assert ann["area"] > 0


def test_frequency_follows_lvis_rule_on_train_image_counts(small_toy):
    train = _load(small_toy, "train")
    images_of = defaultdict(set)
    instances = Counter()
    for ann in train["annotations"]:
        images_of[ann["category_id"]].add(ann["image_id"])
        instances[ann["category_id"]] += 1
    for cat in train["categories"]:
        assert cat["image_count"] == len(images_of[cat["id"]])
        assert cat["instance_count"] == instances[cat["id"]]
        assert cat["frequency"] == lvis_frequency(cat["image_count"])
    groups = Counter(cat["frequency"] for cat in train["categories"])
    assert all(groups[g] >= 5 for g in "rcf"), groups
    assert lvis_frequency(10) == "r" and lvis_frequency(11) == "c"
    assert lvis_frequency(100) == "c" and lvis_frequency(101) == "f"
    assert min(cat["image_count"] for cat in train["categories"]) == 1


def test_val_split_shares_categories_and_covers_every_class(small_toy):
    train, val = _load(small_toy, "train"), _load(small_toy, "val")
    assert val["categories"] == train["categories"]  # LVIS val carries the train-set statistics
    per_class = Counter(a["category_id"] for a in val["annotations"])
    assert set(per_class) == {c["id"] for c in val["categories"]}
    assert min(per_class.values()) >= SMALL_SPEC.val_images_per_class


def test_absent_classes_are_verified_negatives(small_toy):
    """The toy annotations are exhaustive, so every absent class is a negative for the evaluator."""
    val = _load(small_toy, "val")
    present = defaultdict(set)
    for ann in val["annotations"]:
        present[ann["image_id"]].add(ann["category_id"])
    all_ids = {c["id"] for c in val["categories"]}
    for image in val["images"]:
        assert set(image["neg_category_ids"]) == all_ids - present[image["id"]]
        assert image["not_exhaustive_category_ids"] == []


def test_classes_are_shape_colour_texture_combinations():
    parts = [name.split("_") for name in CATEGORY_NAMES]
    assert len(set(CATEGORY_NAMES)) == len(CATEGORY_NAMES) == 48
    assert {p[2] for p in parts} == {"circle", "square", "triangle", "diamond"}
    assert {p[1] for p in parts} == {"solid", "striped", "dotted"}


def test_objects_vary_in_size_and_some_overlap(small_toy):
    train = _load(small_toy, "train")
    sides = np.array([max(a["bbox"][2:]) for a in train["annotations"]])
    assert sides.min() < 20 and sides.max() > 38
    per_image = defaultdict(list)
    for ann in train["annotations"]:
        per_image[ann["image_id"]].append(ann["bbox"])

    def overlaps(a, b):
        return min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0]) and min(a[1] + a[3], b[1] + b[3]) > max(
            a[1], b[1]
        )

    assert any(
        overlaps(a, b) for boxes in per_image.values() for i, a in enumerate(boxes) for b in boxes[i + 1 :]
    )


def test_a_spec_without_enough_frequent_classes_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="frequency group 'f'"):
        make_toy(tmp_path, ToySpec(num_train_images=300, max_images_per_class=120))
    assert not (tmp_path / "annotations" / "lvis_v1_train.json").exists()


def test_make_toy_cli(tmp_path):
    from eqlv2.cli import main

    assert main(["make-toy", str(tmp_path), "--seed", "3", "--num-train-images", "300", "--num-val-images",
                 "60", "--max-images-per-class", "160", "--val-images-per-class", "3"]) == 0  # fmt: skip
    assert (tmp_path / "annotations" / "lvis_v1_val.json").is_file()
