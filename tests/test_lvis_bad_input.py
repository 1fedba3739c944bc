"""Bad input to ``eqlv2 evaluate-lvis``: one line naming the file and what is wrong, exit 2, no output."""

from __future__ import annotations

import json
import math

import pytest

from eqlv2.cli import main
from tests.lvis_cases import CaseSize, make_case, write_case


@pytest.fixture
def case(tmp_path):
    gt, results = make_case(0, CaseSize(images=8, categories=20, dets_per_image=10, crowded_fraction=0))
    return tmp_path, gt, results


def _evaluate(capsys, gt_path, dt_path, out, iou_type="bbox"):
    code = main(["evaluate-lvis", "--ann", str(gt_path), "--results", str(dt_path), "--iou-type", iou_type,
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code != 0 and not out.exists()
    assert len(err.splitlines()) == 1, err
    return err


def test_a_truncated_annotation_file_is_named(case, capsys):
    tmp_path, gt, results = case
    gt_path, dt_path = write_case(tmp_path, gt, results)
    gt_path.write_bytes(gt_path.read_bytes()[:5000])
    err = _evaluate(capsys, gt_path, dt_path, tmp_path / "m.json")
    assert str(gt_path) in err and "not valid JSON" in err


def test_an_annotation_file_without_images_is_named(case, capsys):
    tmp_path, gt, results = case
    gt_path, dt_path = write_case(tmp_path, {"categories": gt["categories"], "annotations": []}, results)
    err = _evaluate(capsys, gt_path, dt_path, tmp_path / "m.json")
    assert str(gt_path) in err and "'images'" in err


@pytest.mark.parametrize(("field", "value", "message"), [
    ("category_id", 99999, "category_id 99999, which is not a category of"),
    ("image_id", 424242, "image_id 424242, which is not an image of"),
    ("score", math.nan, "non-finite score"),
    ("bbox", [0, 0, math.inf, 3], "non-finite bbox"),
])  # fmt: skip
def test_detections_that_look_like_a_mapping_bug_are_refused(case, capsys, field, value, message):
    tmp_path, gt, results = case
    results[3][field] = value
    gt_path, dt_path = write_case(tmp_path, gt, results)
    err = _evaluate(capsys, gt_path, dt_path, tmp_path / "m.json")
    assert str(dt_path) in err and message in err and "detection 3" in err


def test_results_without_masks_are_not_evaluated_as_segm(case, capsys):
    tmp_path, gt, results = case
    for det in results:
        det.pop("segmentation")
    gt_path, dt_path = write_case(tmp_path, gt, results)
    err = _evaluate(capsys, gt_path, dt_path, tmp_path / "m.json", "segm")
    assert str(dt_path) in err and "lacks the field 'segmentation'" in err and "segm" in err


def test_a_mask_of_another_image_size_is_refused(case, capsys):
    tmp_path, gt, results = case
    results[0]["segmentation"]["size"] = [7, 7]
    gt_path, dt_path = write_case(tmp_path, gt, results)
    err = _evaluate(capsys, gt_path, dt_path, tmp_path / "m.json", "segm")
    assert str(dt_path) in err and "detection 0" in err and "mask of size [7, 7]" in err


def test_bootstrap_needs_the_fast_backend(case, capsys):
    tmp_path, gt, results = case
    gt_path, dt_path = write_case(tmp_path, gt, results)
    out = tmp_path / "m.json"
    code = main(["evaluate-lvis", "--ann", str(gt_path), "--results", str(dt_path), "--iou-type", "bbox",
                 "--out", str(out), "--backend", "lvis", "--bootstrap", "10"])  # fmt: skip
    assert code != 0 and not out.exists() and "fast backend" in capsys.readouterr().err


def test_a_missing_result_file_is_named(case, capsys):
    tmp_path, gt, results = case
    gt_path, _ = write_case(tmp_path, gt, results)
    err = _evaluate(capsys, gt_path, tmp_path / "nowhere.json", tmp_path / "m.json")
    assert "nowhere.json" in err and "does not exist" in err
    assert json.loads(gt_path.read_text())  # the annotation file untouched
