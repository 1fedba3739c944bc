"""The embedded dataset's OpenImages twin, and the converter to a COCO-style training JSON."""

from __future__ import annotations

import json
import math
from collections import Counter

import pandas as pd
import pytest

from eqlv2.datasets.openimages_convert import convert_openimages
from eqlv2.datasets.openimages_toy import LEAF_MIDS, SHAPE_MIDS, write_openimages_twin
from eqlv2.datasets.toy import CATEGORY_NAMES
from eqlv2.evaluation.openimages import evaluate_openimages, read_classes, read_hierarchy

FILES = (
    "classes.csv",
    "hierarchy.json",
    "train-bbox.csv",
    "train-image-labels.csv",
    "validation-bbox.csv",
    "validation-image-labels.csv",
)
LVIS_SPLIT = {"train": "train", "validation": "val"}


def _lvis(root, split):
    return json.loads((root / "annotations" / f"lvis_v1_{split}.json").read_text())


def _csv(path):
    return pd.read_csv(path, dtype={"ImageID": str, "LabelName": str})


def _convert(root, split, tmp_path, **kwargs):
    oi = root / "openimages"
    out = tmp_path / f"{split}.json"
    doc = convert_openimages(
        oi / f"{split}-bbox.csv",
        oi / f"{split}-image-labels.csv",
        oi / "classes.csv",
        root / f"{LVIS_SPLIT[split]}2017",
        out,
        **kwargs,
    )
    assert json.loads(out.read_text()) == doc
    return doc


def test_same_seed_gives_byte_identical_files(small_toy, tmp_path):
    write_openimages_twin(tmp_path, _lvis(small_toy, "train"), _lvis(small_toy, "val"), seed=3)
    for name in FILES:
        assert (tmp_path / "openimages" / name).read_bytes() == (small_toy / "openimages" / name).read_bytes()
    write_openimages_twin(tmp_path / "other", _lvis(small_toy, "train"), _lvis(small_toy, "val"), seed=4)
    other = tmp_path / "other" / "openimages" / "train-image-labels.csv"
    assert other.read_bytes() != (small_toy / "openimages" / "train-image-labels.csv").read_bytes()


def test_class_files_are_what_the_evaluator_reads(small_toy):
    oi = small_toy / "openimages"
    assert read_classes(oi / "classes.csv") == [*LEAF_MIDS, *SHAPE_MIDS.values()]
    ancestors, descendants = read_hierarchy(oi / "hierarchy.json")
    for label, name in enumerate(CATEGORY_NAMES):
        assert ancestors[LEAF_MIDS[label]] == {SHAPE_MIDS[name.split("_")[2]]}
    assert all(len(descendants[mid]) == 12 for mid in SHAPE_MIDS.values())


@pytest.mark.parametrize("split", ["train", "validation"])
def test_boxes_follow_the_lvis_boxes_with_group_of_merges(small_toy, split):
    lvis = _lvis(small_toy, LVIS_SPLIT[split])
    boxes = _csv(small_toy / "openimages" / f"{split}-bbox.csv")
    pairs = Counter((a["image_id"], a["category_id"]) for a in lvis["annotations"])
    assert len(boxes) == len(pairs)  # one row per (image, class): repeated instances merge
    repeated = sum(n > 1 for n in pairs.values())
    assert boxes["IsGroupOf"].sum() >= repeated
    assert boxes["IsGroupOf"].sum() > 0
    coords = boxes[["XMin", "XMax", "YMin", "YMax"]].to_numpy()
    assert ((coords >= 0) & (coords <= 1)).all()
    assert (boxes["XMin"] < boxes["XMax"]).all() and (boxes["YMin"] < boxes["YMax"]).all()
    stems = {f"{i['id']:012d}" for i in lvis["images"]}
    assert set(boxes["ImageID"]) <= stems


@pytest.mark.parametrize("split", ["train", "validation"])
def test_converter_keeps_every_box_flag_and_label(small_toy, tmp_path, split):
    oi = small_toy / "openimages"
    boxes = _csv(oi / f"{split}-bbox.csv")
    labels = _csv(oi / f"{split}-image-labels.csv")
    doc = _convert(small_toy, split, tmp_path)
    images = {img["id"]: img for img in doc["images"]}
    cats = {c["id"]: c for c in doc["categories"]}
    assert [c["freebase_id"] for c in doc["categories"]] == read_classes(oi / "classes.csv")
    assert len(doc["annotations"]) == len(boxes)
    for ann, row in zip(doc["annotations"], boxes.itertuples(), strict=True):
        img = images[ann["image_id"]]
        assert img["file_name"] == f"{row.ImageID}.jpg"
        assert cats[ann["category_id"]]["freebase_id"] == row.LabelName == ann["freebase_id"]
        x, y, w, h = ann["bbox"]
        W, H = img["width"], img["height"]
        got = (x / W, (x + w) / W, y / H, (y + h) / H)
        assert got == pytest.approx((row.XMin, row.XMax, row.YMin, row.YMax), abs=1e-6)
        assert ann["isgroupof"] == row.IsGroupOf and ann["iscrowd"] == 0
        assert ann["area"] == pytest.approx(w * h)
    assert (labels["Confidence"] == 0).any() and (labels["Confidence"] == 1).any()
    by_name = {img["openimages_id"]: img for img in doc["images"]}
    for row in labels.itertuples():  # every row, the first included
        key = "pos_category_ids" if row.Confidence == 1 else "neg_category_ids"
        cat = next(c["id"] for c in doc["categories"] if c["freebase_id"] == row.LabelName)
        assert cat in by_name[row.ImageID][key]
    assert sum(len(i["pos_category_ids"]) + len(i["neg_category_ids"]) for i in doc["images"]) == len(labels)
    instance = Counter(boxes["LabelName"])
    image = Counter(mid for _, mid in set(zip(boxes["ImageID"], boxes["LabelName"], strict=True)))
    for c in doc["categories"]:
        assert c["instance_count"] == instance.get(c["freebase_id"], 0)
        assert c["image_count"] == image.get(c["freebase_id"], 0)
    assert all(img["width"] == img["height"] == 128 for img in doc["images"])


def test_sizes_csv_replaces_the_images(small_toy, tmp_path):
    names = sorted(set(_csv(small_toy / "openimages" / "validation-bbox.csv")["ImageID"]))
    names = sorted(
        set(names) | set(_csv(small_toy / "openimages" / "validation-image-labels.csv")["ImageID"])
    )
    sizes = tmp_path / "sizes.csv"
    sizes.write_text("image_id,image_w,image_h\n" + "".join(f"{n},256,64\n" for n in names))
    doc = _convert(small_toy, "validation", tmp_path, sizes_csv=sizes)
    assert all((img["width"], img["height"]) == (256, 64) for img in doc["images"])


def test_train_instance_counts_match_lvis_before_merging(small_toy, tmp_path):
    doc = _convert(small_toy, "train", tmp_path)
    lvis = _lvis(small_toy, "train")
    for lvis_cat, cat in zip(lvis["categories"], doc["categories"], strict=False):
        assert cat["name"] == lvis_cat["name"]
        assert cat["image_count"] == lvis_cat["image_count"]  # same images, merged or not
        assert cat["instance_count"] <= lvis_cat["instance_count"]


def test_perfect_predictions_score_one(small_toy, tmp_path):
    oi = small_toy / "openimages"
    boxes = _csv(oi / "validation-bbox.csv")
    parent = {LEAF_MIDS[i]: SHAPE_MIDS[n.split("_")[2]] for i, n in enumerate(CATEGORY_NAMES)}
    lines = ["ImageID,LabelName,Score,XMin,XMax,YMin,YMax"]
    for r in boxes.itertuples():
        for mid in (r.LabelName, parent[r.LabelName]):
            lines.append(f"{r.ImageID},{mid},1.0,{r.XMin!r},{r.XMax!r},{r.YMin!r},{r.YMax!r}")
    predictions = tmp_path / "predictions.csv"
    predictions.write_text("\n".join(lines) + "\n")
    mean, per_class = evaluate_openimages(
        oi / "validation-bbox.csv",
        oi / "validation-image-labels.csv",
        oi / "hierarchy.json",
        oi / "classes.csv",
        predictions,
    )
    assert len(per_class) == 52 and not any(math.isnan(ap) for ap in per_class.values())
    assert mean == pytest.approx(1.0)


def test_cli_and_one_line_errors(small_toy, tmp_path, capsys):
    from eqlv2.cli import main

    oi = small_toy / "openimages"
    args = ["convert-openimages", "--image-labels", str(oi / "validation-image-labels.csv"),
            "--classes", str(oi / "classes.csv"), "--images-dir", str(small_toy / "val2017")]  # fmt: skip
    assert main([*args, "--boxes", str(oi / "validation-bbox.csv"), "--out", str(tmp_path / "v.json")]) == 0
    assert (tmp_path / "v.json").is_file()

    no_column = tmp_path / "no_column.csv"
    no_column.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax\nx,/m/eqlv2_000,0,1,0,1\n")
    assert main([*args, "--boxes", str(no_column), "--out", str(tmp_path / "a.json")]) == 2
    err = capsys.readouterr().err
    assert "no_column.csv" in err and "'IsGroupOf'" in err and len(err.strip().splitlines()) == 1

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf\nx,/m/nope,0,1,0,1,0\n")
    assert main([*args, "--boxes", str(unknown), "--out", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "unknown.csv" in err and "'LabelName'" in err and "/m/nope" in err
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


@pytest.mark.parametrize("split", ["train", "validation"])
def test_the_twin_has_an_openimages_folder_layout(small_toy, split):
    """images/<split>/<ImageID>.jpg for every image of the split's CSVs: relative links to the toy's
    image folders, so that the twin moves with the dataset and the converter reads it as real data."""
    link = small_toy / "openimages" / "images" / split
    assert link.is_symlink() and not link.readlink().is_absolute()
    assert link.resolve() == (small_toy / f"{LVIS_SPLIT[split]}2017").resolve()
    oi = small_toy / "openimages"
    names = set(_csv(oi / f"{split}-bbox.csv")["ImageID"]) | set(
        _csv(oi / f"{split}-image-labels.csv")["ImageID"]
    )
    assert names and all((link / f"{name}.jpg").is_file() for name in names)
