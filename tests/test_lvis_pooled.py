"""AP_pool (Dave et al. 2021): the fixed protocol's per-category matching, then one ranking per pool of
categories; the fast evaluator equal to AP_pool computed over ``LVISEval.evaluate``'s own matching."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from eqlv2.cli import main
from eqlv2.evaluation.lvis import evaluate_lvis
from eqlv2.evaluation.lvis_scoring import POOLED_KEYS
from tests.lvis_cases import CaseSize, make_case, write_case

TOLERANCE = 1e-9


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize(("seed", "k"), [(0, 100), (1, 10_000)])
def test_ap_pool_equals_the_pooled_ranking_over_lvis_matching(tmp_path, iou_type, seed, k):
    """K = 100 cuts categories (tied scores at the cut), K = 10000 keeps images over the cap of 300;
    tied scores across images and categories test the pooled ranking's tie order."""
    gt, results = make_case(seed)
    per_category = Counter(d["category_id"] for d in results)
    per_image = Counter(d["image_id"] for d in results)
    assert max(per_image.values()) > 300 and min(per_category.values()) < k
    scores = Counter(d["score"] for d in results)
    assert max(scores.values()) > 10  # ties across images and categories
    paths = write_case(tmp_path, gt, results)
    fast = evaluate_lvis(*paths, iou_type, protocol="pooled", dets_per_class=k)
    reference = evaluate_lvis(*paths, iou_type, backend="lvis", protocol="pooled", dets_per_class=k)
    assert list(fast) == list(POOLED_KEYS) == list(reference)
    for key in POOLED_KEYS:
        assert abs(fast[key] - reference[key]) <= TOLERANCE, (key, fast[key], reference[key])
    assert all(0 < fast[key] < 1 for key in POOLED_KEYS)
    assert fast["AP_pool"] != evaluate_lvis(*paths, iou_type, protocol="fixed", dets_per_class=k)["AP"]


def _hand_case(tmp_path):
    """Two images, a rare and a frequent category, one annotation each in image 1 and one frequent in 2."""
    box = [10.0, 10.0, 20.0, 20.0]
    lists = {"neg_category_ids": [], "not_exhaustive_category_ids": []}
    images = [{"id": i, "height": 100, "width": 100, **lists} for i in (1, 2)]
    categories = [{"id": 1, "name": "a", "frequency": "r"}, {"id": 2, "name": "b", "frequency": "f"}]
    annotations = [{"id": n + 1, "image_id": image, "category_id": category, "bbox": box, "area": 400.0}
                   for n, (image, category) in enumerate([(1, 1), (1, 2), (2, 2)])]  # fmt: skip
    miss = [60.0, 60.0, 20.0, 20.0]
    results = [
        {"image_id": 1, "category_id": 2, "bbox": miss, "score": 0.9},  # false positive, ranked first
        {"image_id": 1, "category_id": 1, "bbox": box, "score": 0.8},
        {"image_id": 1, "category_id": 2, "bbox": box, "score": 0.7},
        {"image_id": 2, "category_id": 2, "bbox": box, "score": 0.6},
    ]
    gt = {"images": images, "categories": categories, "annotations": annotations}
    return write_case(tmp_path, gt, results)


def test_ap_pool_by_hand(tmp_path):
    """Pooled ranking FP, TP, TP, TP over 3 annotations at every IoU threshold: precision made
    non-increasing is 3/4 at every recall threshold, so AP_pool = 0.75.  The rare pool (one TP, nothing
    before it) is 1; the frequent pool FP, TP, TP over 2 annotations gives 2/3.  Per category the same
    frequent ranking gives AP 2/3 too, but the standard AP averages it with the rare 1."""
    paths = _hand_case(tmp_path)
    for backend in ("fast", "lvis"):
        metrics = evaluate_lvis(*paths, "bbox", backend=backend, protocol="pooled")
        assert metrics["AP_pool"] == pytest.approx(0.75, abs=1e-12)
        assert metrics["APr_pool"] == pytest.approx(1.0, abs=1e-12)
        assert metrics["APf_pool"] == pytest.approx(2 / 3, abs=1e-12)
        assert metrics["APc_pool"] == -1.0  # no common category
    assert evaluate_lvis(*paths, "bbox", protocol="fixed")["AP"] == pytest.approx(5 / 6, abs=1e-12)


def test_cli_pooled_protocol_writes_and_prints_its_keys(tmp_path, capsys):
    gt, results = make_case(8, CaseSize(images=20, categories=25))
    gt_path, dt_path = write_case(tmp_path, gt, results)
    out = tmp_path / "metrics.json"
    argv = ["evaluate-lvis", "--ann", str(gt_path), "--results", str(dt_path), "--iou-type", "boundary",
            "--out", str(out), "--protocol", "pooled", "--dets-per-class", "60"]  # fmt: skip
    assert main(argv) == 0
    assert list(json.loads(out.read_text())) == list(POOLED_KEYS)
    printed = capsys.readouterr().out
    assert "Pooled AP     (AP_pool)" in printed and "maxDets=60perclass catIds=  f]" in printed


def test_pooled_refuses_what_it_cannot_give(tmp_path):
    gt, results = make_case(8, CaseSize(images=10, categories=10))
    paths = write_case(tmp_path, gt, results)
    with pytest.raises(ValueError, match="bootstrap intervals are not available under the pooled protocol"):
        evaluate_lvis(*paths, "bbox", protocol="pooled", bootstrap=10)
    with pytest.raises(ValueError, match="per-class AP is not defined under the pooled protocol"):
        evaluate_lvis(*paths, "bbox", protocol="pooled", per_class=True)
