"""LVIS evaluation: the lvis package's numbers, plus the original fork's ARr/ARc/ARf."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from eqlv2.cli import main
from eqlv2.compat import import_lvis, numpy_float_alias
from eqlv2.evaluation.lvis import METRIC_KEYS, evaluate_lvis, format_metrics


def _square(x, y, s):
    return [[x, y, x + s, y, x + s, y + s, x, y + s]]


@pytest.fixture
def hand_case(tmp_path):
    """One 100x100 image; a rare, a common and a frequent class whose recall is known by hand.

    * rare (id 1): two boxes, one found exactly            -> recall 1/2 at every IoU threshold
    * common (id 2): one 20x20 box, found shifted by 3 px  -> IoU 340/460 = 0.739: recall 1 at the
      thresholds 0.50..0.70 (five of ten), 0 above          -> mean recall 0.5
    * frequent (id 3): one box, not found                   -> recall 0
    """
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100, "coco_url": "http://x/val2017/1.jpg",
                    "neg_category_ids": [], "not_exhaustive_category_ids": []}],
        "categories": [
            {"id": 1, "name": "r1", "frequency": "r", "image_count": 1, "instance_count": 1, "synset": "a"},
            {"id": 2, "name": "c1", "frequency": "c", "image_count": 20, "instance_count": 20, "synset": "b"},
            {"id": 3, "name": "f1", "frequency": "f", "image_count": 200, "instance_count": 9, "synset": "c"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "area": 400,
             "segmentation": _square(0, 0, 20)},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "area": 400,
             "segmentation": _square(50, 50, 20)},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [30, 0, 20, 20], "area": 400,
             "segmentation": _square(30, 0, 20)},
            {"id": 4, "image_id": 1, "category_id": 3, "bbox": [0, 70, 20, 20], "area": 400,
             "segmentation": _square(0, 70, 20)},
        ],
    }  # fmt: skip
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.9,
         "segmentation": _square(0, 0, 20)},
        {"image_id": 1, "category_id": 2, "bbox": [33, 0, 20, 20], "score": 0.8,
         "segmentation": _square(33, 0, 20)},
    ]  # fmt: skip
    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dets))
    return gt_path, dt_path


def _reference(gt_path, dt_path, iou_type):
    """LVISEval run directly, as a user of the lvis package would."""
    lvis = import_lvis()
    gt = lvis.LVIS(str(gt_path))
    ev = lvis.LVISEval(gt, lvis.LVISResults(gt, str(dt_path)), iou_type=iou_type)
    ev.evaluate()
    with numpy_float_alias():
        ev.accumulate()
    ev.summarize()
    return ev.results


def test_group_recall_as_the_original_fork_defined_it(hand_case):
    metrics = evaluate_lvis(*hand_case, "bbox")
    assert metrics["ARr@300"] == pytest.approx(0.5)
    assert metrics["ARc@300"] == pytest.approx(0.5)
    assert metrics["ARf@300"] == pytest.approx(0.0)
    # The overall AR is the mean over the three categories' recalls.
    assert metrics["AR@300"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_numbers_are_lvis_evals(hand_case, iou_type):
    metrics = evaluate_lvis(*hand_case, iou_type)
    assert list(metrics) == list(METRIC_KEYS)
    reference = _reference(*hand_case, iou_type)
    for key in METRIC_KEYS[:13]:
        assert metrics[key] == reference[key], key


def test_numbers_are_lvis_evals_on_the_toy_dataset(small_toy, tmp_path):
    """Noisy copies of the ground truth, some with the wrong class, scored both ways."""
    gt_path = small_toy / "annotations" / "lvis_v1_val.json"
    gt = json.loads(gt_path.read_text())
    rng = np.random.default_rng(0)
    dets = []
    for ann in gt["annotations"]:
        for _ in range(3):
            x, y, w, h = (np.array(ann["bbox"]) + rng.normal(0, 2, 4)).tolist()
            category = ann["category_id"] if rng.random() < 0.7 else int(rng.integers(1, 49))
            dets.append({"image_id": ann["image_id"], "category_id": category,
                         "bbox": [x, y, max(w, 1), max(h, 1)], "score": float(rng.random())})  # fmt: skip
    dt_path = tmp_path / "dt.json"
    dt_path.write_text(json.dumps(dets))
    metrics = evaluate_lvis(gt_path, dt_path, "bbox")
    reference = _reference(gt_path, dt_path, "bbox")
    for key in METRIC_KEYS[:13]:
        assert metrics[key] == reference[key], key
    assert 0 < metrics["AP"] < 1


def test_process_is_left_as_it_was(hand_case):
    """No root-logger handler from `import lvis`, and numpy without a `float` alias afterwards."""
    before = list(logging.getLogger().handlers)
    evaluate_lvis(*hand_case, "bbox")
    assert logging.getLogger().handlers == before
    assert "float" not in np.__dict__


def test_cli_writes_flat_metrics_and_prints_the_original_summary(hand_case, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    gt_path, dt_path = hand_case
    assert main(["evaluate-lvis", "--ann", str(gt_path), "--results", str(dt_path),
                 "--iou-type", "segm", "--out", str(out)]) == 0  # fmt: skip
    written = json.loads(out.read_text())
    assert list(written) == list(METRIC_KEYS)
    printed = capsys.readouterr().out
    assert "maxDets=300 catIds=  r] = 0.500" in printed
    assert format_metrics(written) in printed


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "not valid JSON"), ("{}", "expected a JSON list"), ("[]", "holds no detections"),
     ('[{"bbox": [0, 0, 1, 1]}]', "lacks the field 'image_id'")],
)  # fmt: skip
def test_bad_result_files_are_clear_errors(hand_case, tmp_path, capsys, content, message):
    gt_path, _ = hand_case
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    out = tmp_path / "metrics.json"
    code = main(["evaluate-lvis", "--ann", str(gt_path), "--results", str(bad), "--iou-type", "bbox",
                 "--out", str(out)])  # fmt: skip
    assert code != 0
    err = capsys.readouterr().err
    assert str(bad) in err and message in err
    assert not out.exists()


def test_importing_eqlv2_leaves_the_root_logger_alone():
    """mmdet imports lvis, whose import calls logging.basicConfig; Snakemake's log would double."""
    code = "import logging, eqlv2; print(len(logging.getLogger().handlers))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
