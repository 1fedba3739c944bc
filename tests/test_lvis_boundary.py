"""Boundary AP (Cheng et al. 2021): the fast evaluator with IoU = min(mask IoU, boundary IoU) equals the
``lvis`` package with the same IoU put into its IoU step, under the standard and the fixed protocol.

The reference's boundary is boundary-iou-api's ``mask_to_boundary``, written here with cv2 as that API
does (one pixel of background padding, ``d`` erosions by a 3x3 square), so the image border counts as
boundary and the kernel in :mod:`eqlv2.evaluation.boundary` is checked against cv2 itself.
"""

from __future__ import annotations

import json
from collections import defaultdict

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from eqlv2.cli import main
from eqlv2.compat import import_lvis, numpy_float_alias
from eqlv2.evaluation import boundary, rle
from eqlv2.evaluation.lvis import evaluate_lvis, metric_keys
from tests.lvis_cases import CaseSize, make_case, write_case

TOLERANCE = 1e-9


def _mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """boundary-iou-api's ``mask_to_boundary``."""
    h, w = mask.shape
    dilation = int(round(dilation_ratio * np.sqrt(h**2 + w**2)))
    dilation = max(dilation, 1)
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), dtype=np.uint8), iterations=dilation)
    return mask - eroded[1 : h + 1, 1 : w + 1]


def _boundary_rle(segmentation: dict) -> dict:
    return mask_utils.encode(np.asfortranarray(_mask_to_boundary(mask_utils.decode(segmentation))))


def _reference(gt_path, dt_path, k: int | None = None) -> dict:
    """``LVISEval`` (segm) whose ``compute_iou`` returns min(mask IoU, boundary IoU); with ``k`` run the
    way Dave et al.'s ``scripts/evaluate_ap_fixed.py`` runs it (top ``k`` per category, no image cap)."""
    lvis = import_lvis()

    class BoundaryLVISEval(lvis.LVISEval):
        def compute_iou(self, img_id, cat_id):
            ious = super().compute_iou(img_id, cat_id)
            gt, dt = self._get_gt_dt(img_id, cat_id)
            if not len(gt) or not len(dt):
                return ious
            dt = [dt[i] for i in np.argsort([-d["score"] for d in dt], kind="mergesort")]
            boundary_ious = mask_utils.iou(
                [_boundary_rle(d["segmentation"]) for d in dt],
                [_boundary_rle(g["segmentation"]) for g in gt],
                [0] * len(gt),
            )
            return np.minimum(ious, boundary_ious)

    results = json.loads(dt_path.read_text())
    max_dets = 300
    if k is not None:
        by_cat = defaultdict(list)
        for ann in results:
            by_cat[ann["category_id"]].append(ann)
        results = [
            a for anns in by_cat.values() for a in sorted(anns, key=lambda x: x["score"], reverse=True)[:k]
        ]
        max_dets = -1
    gt = lvis.LVIS(str(gt_path))
    lvis_eval = BoundaryLVISEval(gt, lvis.LVISResults(gt, results, max_dets=max_dets), iou_type="segm")
    lvis_eval.params.max_dets = max_dets
    lvis_eval.evaluate()
    with numpy_float_alias():
        lvis_eval.accumulate()
    lvis_eval.summarize()
    ours = metric_keys(300 if k is None else f"{k}perclass")
    return {
        key: lvis_eval.results[their] for key, their in zip(ours[:13], metric_keys(max_dets), strict=False)
    }


def test_boundaries_are_cv2s():
    """The compiled boundary of random, full, empty and border-touching masks is ``mask_to_boundary``'s."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        h, w = int(rng.integers(1, 60)), int(rng.integers(1, 60))
        mask = np.zeros((h, w), np.uint8)
        kind = trial % 4
        if kind == 0:
            mask[:] = rng.random((h, w)) < 0.7
        elif kind == 1:
            y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
            mask[y : y + int(rng.integers(1, h + 1)), x : x + int(rng.integers(1, w + 1))] = 1
        elif kind == 2:
            mask[:] = 1
        encoded = mask_utils.encode(np.asfortranarray(mask))
        text = np.frombuffer(encoded["counts"], np.uint8)
        runs, start = boundary.mask_boundaries(
            text, np.array([0]), np.array([len(text)]), False, np.array([[h, w]])
        )
        assert runs.sum() == h * w
        assert boundary.dilation(h, w) == max(1, int(round(0.02 * np.sqrt(h**2 + w**2))))
        flat = np.zeros(h * w, np.uint8)
        edges = np.concatenate([[0], np.cumsum(runs)])
        for j in range(1, len(runs), 2):
            flat[edges[j] : edges[j + 1]] = 1
        assert (flat.reshape(w, h).T == _mask_to_boundary(mask)).all(), (trial, h, w)
        assert rle.areas(runs, start)[0] == _mask_to_boundary(mask).sum()


@pytest.mark.parametrize(("seed", "k"), [(0, None), (1, None), (2, 100)])
def test_boundary_ap_equals_lvis_eval_with_boundary_iou(tmp_path, seed, k):
    """Generated cases (degenerate ground truth, images over the cap, ties), both protocols."""
    gt, results = make_case(seed, CaseSize(images=40))
    assert any(a["area"] == 0 for a in gt["annotations"])
    paths = write_case(tmp_path, gt, results)
    protocol = {"protocol": "fixed", "dets_per_class": k} if k else {}
    fast = evaluate_lvis(*paths, "boundary", **protocol)
    reference = _reference(*paths, k)
    for key, value in reference.items():
        assert abs(fast[key] - value) <= TOLERANCE, (key, fast[key], value)
    # Boundary IoU is never above mask IoU, and on these octagons it is often below.
    assert fast["AP75"] < evaluate_lvis(*paths, "segm", **protocol)["AP75"]


def test_boundary_needs_the_fast_backend(tmp_path):
    gt, results = make_case(3, CaseSize(images=10, categories=10))
    paths = write_case(tmp_path, gt, results)
    with pytest.raises(ValueError, match="no boundary IoU"):
        evaluate_lvis(*paths, "boundary", backend="lvis")


def test_cli_boundary_ap_under_the_fixed_protocol(tmp_path, capsys):
    gt, results = make_case(4, CaseSize(images=15, categories=20))
    gt_path, dt_path = write_case(tmp_path, gt, results)
    out = tmp_path / "metrics.json"
    argv = ["evaluate-lvis", "--ann", str(gt_path), "--results", str(dt_path), "--iou-type", "boundary",
            "--out", str(out), "--protocol", "fixed", "--dets-per-class", "50"]  # fmt: skip
    assert main(argv) == 0
    written = json.loads(out.read_text())
    assert list(written) == list(metric_keys("50perclass"))
    assert (
        written["AP"]
        == evaluate_lvis(gt_path, dt_path, "boundary", protocol="fixed", dets_per_class=50)["AP"]
    )
    assert capsys.readouterr().out.startswith("boundary AP")
