"""The LVIS Challenge protocols beside the standard one: AP_fixed (Dave et al. 2021), equal to the
``lvis`` package run the way the authors' ``scripts/evaluate_ap_fixed.py`` runs it."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict

import pytest

from eqlv2.cli import main
from eqlv2.compat import import_lvis, numpy_float_alias
from eqlv2.evaluation.lvis import evaluate_lvis, metric_keys
from tests.lvis_cases import CaseSize, make_case, write_case
from tests.test_lvis_parity import _assert_same, _features

TOLERANCE = 1e-9


def _dave_ap_fixed(gt_path, dt_path, iou_type: str, k: int) -> dict:
    """large-vocab-devil's ``scripts/evaluate_ap_fixed.py``: top ``k`` per category, no per-image cap.

    Keys renamed from the package's ``AR@-1`` to ours; ARr/ARc/ARf are not the package's, left out.
    """
    results = json.loads(dt_path.read_text())
    by_cat = defaultdict(list)
    for ann in results:
        by_cat[ann["category_id"]].append(ann)
    results = []
    for cat_anns in by_cat.values():
        results.extend(sorted(cat_anns, key=lambda x: x["score"], reverse=True)[:k])
    lvis = import_lvis()
    gt = lvis.LVIS(str(gt_path))
    lvis_eval = lvis.LVISEval(gt, lvis.LVISResults(gt, results, max_dets=-1), iou_type=iou_type)
    lvis_eval.params.max_dets = -1
    lvis_eval.evaluate()
    with numpy_float_alias():
        lvis_eval.accumulate()
    lvis_eval.summarize()
    ours, theirs = metric_keys(f"{k}perclass"), metric_keys(-1)
    return {key: lvis_eval.results[their] for key, their in zip(ours[:13], theirs, strict=False)}


def _assert_close(fast: dict, reference: dict) -> None:
    for key, value in reference.items():
        assert abs(fast[key] - value) <= TOLERANCE, (key, fast[key], value)


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize(("seed", "k"), [(0, 100), (1, 10_000)])
def test_ap_fixed_equals_the_authors_script(tmp_path, caplog, iou_type, seed, k):
    """K = 100 cuts most categories, at tied scores too; K = 10000 keeps every detection, also on the
    images over the standard protocol's cap of 300."""
    gt, results = make_case(seed)
    features = _features(gt, results, 300)
    assert features["images over the cap"] and features["ground truth of area 0"], features
    per_category = Counter(d["category_id"] for d in results)
    if k == 100:
        assert sum(n > k for n in per_category.values()) > 10 and min(per_category.values()) < k
        cut_scores = []
        for category in per_category:
            scores = sorted((d["score"] for d in results if d["category_id"] == category), reverse=True)
            if len(scores) > k:
                cut_scores.append(scores[k - 1] == scores[k])
        assert any(cut_scores)  # a tie straddles the cut: file order decides
    paths = write_case(tmp_path, gt, results)
    with caplog.at_level(logging.WARNING, logger="eqlv2.evaluation.lvis_inputs"):
        fast = evaluate_lvis(*paths, iou_type, protocol="fixed", dets_per_class=k)
    short = sum(per_category.get(c["id"], 0) < k for c in gt["categories"])
    assert f"{short} of the {len(gt['categories'])} categories have fewer than {k} detections" in caplog.text
    reference = evaluate_lvis(*paths, iou_type, backend="lvis", protocol="fixed", dets_per_class=k)
    _assert_same(fast, reference, max_dets=f"{k}perclass")
    _assert_close(fast, _dave_ap_fixed(*paths, iou_type, k))
    assert fast["AP"] != evaluate_lvis(*paths, iou_type)["AP"]


def test_ap_fixed_with_masks_only_and_ignored_ground_truth(tmp_path):
    """Without boxes the areas come from the masks; ignored annotations and id 0 as in the standard run."""
    gt, results = make_case(5, CaseSize(images=30))
    for det in results:
        del det["bbox"]
    for ann in gt["annotations"][::7]:
        ann["ignore"] = 1
    gt["annotations"][3]["id"] = 0
    paths = write_case(tmp_path, gt, results)
    for iou_type in ("segm", "bbox"):
        fast = evaluate_lvis(*paths, iou_type, protocol="fixed", dets_per_class=20)
        _assert_close(fast, _dave_ap_fixed(*paths, iou_type, 20))


def test_cli_fixed_protocol_names_its_limit(tmp_path, capsys, caplog):
    gt, results = make_case(8, CaseSize(images=20, categories=25))
    gt_path, dt_path = write_case(tmp_path, gt, results)
    out = tmp_path / "metrics.json"
    argv = ["evaluate-lvis", "--ann", str(gt_path), "--results", str(dt_path), "--iou-type", "bbox",
            "--out", str(out), "--protocol", "fixed", "--dets-per-class", "60"]  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    written = json.loads(out.read_text())
    assert list(written) == list(metric_keys("60perclass"))
    assert "maxDets=60perclass catIds=  r]" in capsys.readouterr().out
    assert "categories have fewer than 60 detections" in caplog.text


def test_bad_detection_limit_per_class_is_refused(tmp_path):
    gt, results = make_case(8, CaseSize(images=10, categories=10))
    paths = write_case(tmp_path, gt, results)
    with pytest.raises(ValueError, match="dets_per_class must be at least 1"):
        evaluate_lvis(*paths, "bbox", protocol="fixed", dets_per_class=0)
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate_lvis(*paths, "bbox", protocol="pool")
