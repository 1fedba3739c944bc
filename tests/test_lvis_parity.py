"""The fast LVIS evaluator gives the ``lvis`` package's numbers (1e-9), on the cases that make LVIS subtle.

Each case is generated (``tests/lvis_cases.py``) and checked first to hold what it is meant to exercise:
degenerate ground truth, images over the detection cap, images without detections or without ground
truth, negative and not-exhaustive category lists, tied scores.  The reference is ``LVISEval`` itself.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from eqlv2.cli import main
from eqlv2.evaluation.lvis import evaluate_lvis, match_lvis, metric_keys
from eqlv2.evaluation.lvis_inputs import gt_mask_strings, load_ground_truth, mask_string
from eqlv2.evaluation.lvis_scoring import bootstrap_replicates, resample_weights
from tests.lvis_cases import CaseSize, make_case, write_case

TOLERANCE = 1e-9


def _assert_same(fast: dict, reference: dict, max_dets: int = 300) -> None:
    assert list(reference) == list(metric_keys(max_dets))
    for key in reference:
        assert abs(fast[key] - reference[key]) <= TOLERANCE, (key, fast[key], reference[key])


def _features(gt: dict, results: list[dict], max_dets: int) -> dict[str, int]:
    per_image = Counter(d["image_id"] for d in results)
    with_gt = {a["image_id"] for a in gt["annotations"]}
    scores = Counter(d["score"] for d in results)
    return {
        "images over the cap": sum(n > max_dets for n in per_image.values()),
        "images without detections": sum(i["id"] not in per_image for i in gt["images"]),
        "images without ground truth": sum(i["id"] not in with_gt for i in gt["images"]),
        "ground truth of area 0": sum(a["area"] == 0 for a in gt["annotations"]),
        "zero-width boxes of positive area": sum(a["bbox"][3] == 0 < a["area"] for a in gt["annotations"]),
        "negative categories": sum(len(i["neg_category_ids"]) for i in gt["images"]),
        "not-exhaustive categories": sum(len(i["not_exhaustive_category_ids"]) for i in gt["images"]),
        "tied scores": sum(n for n in scores.values() if n > 1),
    }


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_equals_lvis_package(tmp_path, seed, iou_type):
    gt, results = make_case(seed)
    features = _features(gt, results, 300)
    assert all(features.values()), features
    paths = write_case(tmp_path, gt, results)
    _assert_same(evaluate_lvis(*paths, iou_type), evaluate_lvis(*paths, iou_type, backend="lvis"))


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_another_detection_limit_and_its_keys(tmp_path, iou_type):
    gt, results = make_case(3, CaseSize(max_dets=25, dets_per_image=20, crowded_fraction=0.3))
    assert _features(gt, results, 25)["images over the cap"] > 5
    paths = write_case(tmp_path, gt, results)
    fast = evaluate_lvis(*paths, iou_type, max_dets=25)
    assert "AR@25" in fast and "ARr@25" in fast and "AR@300" not in fast
    _assert_same(fast, evaluate_lvis(*paths, iou_type, max_dets=25, backend="lvis"), max_dets=25)


def test_masks_without_boxes_take_their_area_from_the_mask(tmp_path):
    """Without a "bbox" key LVISResults takes a detection's area from its mask, not from a box."""
    gt, results = make_case(4)
    for det in results:
        del det["bbox"]
    paths = write_case(tmp_path, gt, results)
    for iou_type in ("segm", "bbox"):  # bbox evaluation then uses the masks' boxes
        _assert_same(evaluate_lvis(*paths, iou_type), evaluate_lvis(*paths, iou_type, backend="lvis"))


def test_ignored_ground_truth_and_id_zero(tmp_path):
    """Annotations marked ignore, and one with id 0, which LVISEval's matching records as no match."""
    gt, results = make_case(5)
    for ann in gt["annotations"][::7]:
        ann["ignore"] = 1
    gt["annotations"][3]["id"] = 0
    paths = write_case(tmp_path, gt, results)
    for iou_type in ("bbox", "segm"):
        _assert_same(evaluate_lvis(*paths, iou_type), evaluate_lvis(*paths, iou_type, backend="lvis"))


def _split_polygon(polygon: list[float]) -> list[list[float]]:
    """Two overlapping polygons covering the octagon: a multi-part annotation."""
    points = np.asarray(polygon).reshape(-1, 2)
    return [points[:5].ravel().tolist(), points[3:].ravel().tolist() + points[:1].ravel().tolist()]


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths in column-major order, starting with a background run."""
    flat = mask.ravel(order="F")
    edges = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(edges).tolist()
    return [0, *runs] if flat[0] else runs


def test_ground_truth_masks_in_every_form_lvis_reads(tmp_path):
    """Annotations given as several polygons, as uncompressed RLE and as compressed RLE (the forms
    ``LVIS.ann_to_rle`` reads), mixed within images, score as LVISEval scores them."""
    gt, results = make_case(9)
    sizes = {image["id"]: (image["height"], image["width"]) for image in gt["images"]}
    for k, ann in enumerate(gt["annotations"]):
        polygon = ann["segmentation"][0]
        if k % 4 == 1:
            ann["segmentation"] = _split_polygon(polygon)
        elif k % 4 == 2:
            size = sizes[ann["image_id"]]
            mask = mask_utils.decode(mask_utils.frPyObjects([polygon], *size))[:, :, 0]
            ann["segmentation"] = {"size": list(size), "counts": _uncompressed_counts(mask)}
        elif k % 4 == 3:
            rle = mask_utils.merge(mask_utils.frPyObjects([polygon], *sizes[ann["image_id"]]))
            ann["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
    assert (
        sum(len(a["segmentation"]) == 2 for a in gt["annotations"] if isinstance(a["segmentation"], list))
        > 20
    )
    paths = write_case(tmp_path, gt, results)
    _assert_same(evaluate_lvis(*paths, "segm"), evaluate_lvis(*paths, "segm", backend="lvis"))


def test_ground_truth_masks_batched_per_image_are_one_conversion_per_annotation():
    """Converting an image's polygons in one pycocotools call gives each annotation the string that its
    own ``ann_to_rle`` gives, also for multi-polygon annotations and for what is not a polygon list."""
    rng = np.random.default_rng(0)
    height, width = 120, 90
    segmentations, image_index = [], []
    for image in range(6):
        for k in range(7):
            x, y = rng.uniform(0, 40, 2)
            polygon = (
                np.array([x, y, x + 30, y, x + 35, y + 20, x + 5, y + 40]) + rng.normal(0, 1, 8)
            ).tolist()
            form = (image + k) % 5
            if form == 0:
                segmentation = [polygon]
            elif form == 1:
                segmentation = [polygon, (np.array(polygon) + 20).tolist(), polygon[:6]]
            elif form == 2:  # a triangle, the fewest numbers pycocotools reads as a polygon
                segmentation = [polygon[:6]]
            elif form == 3:
                rle = mask_utils.merge(mask_utils.frPyObjects([polygon], height, width))
                segmentation = {"size": [height, width], "counts": rle["counts"].decode()}
            else:
                segmentation = [polygon, polygon]
            segmentations.append(segmentation)
            image_index.append(image)
    text, begin, end = gt_mask_strings(segmentations, np.array(image_index), np.full((6, 2), (height, width)))
    for g, segmentation in enumerate(segmentations):
        assert text[begin[g] : end[g]].tobytes() == mask_string(segmentation, height, width)[0], g


def _resampled_case(gt: dict, results: list[dict], weight: np.ndarray) -> tuple[dict, list[dict]]:
    """The dataset a resample stands for: image i copied weight[i] times, copies adjacent in id order."""
    image_ids = sorted(i["id"] for i in gt["images"])
    index = {image_id: k for k, image_id in enumerate(image_ids)}
    new_ids = {}
    next_id = 1
    for image_id in image_ids:
        new_ids[image_id] = list(range(next_id, next_id + int(weight[index[image_id]])))
        next_id += int(weight[index[image_id]])
    images = [dict(image, id=new) for image in gt["images"] for new in new_ids[image["id"]]]
    annotations = [
        dict(ann, id=k + 1, image_id=new)
        for k, (ann, new) in enumerate((a, n) for a in gt["annotations"] for n in new_ids[a["image_id"]])
    ]
    dets = [dict(det, image_id=new) for det in results for new in new_ids[det["image_id"]]]
    return {"images": images, "categories": gt["categories"], "annotations": annotations}, dets


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_each_bootstrap_resample_is_the_exact_protocol_on_the_resampled_images(tmp_path, iou_type):
    """A resample's AP, APr, APc, APf equal LVISEval on a dataset of the drawn images (copies included)."""
    gt, results = make_case(6, CaseSize(images=40))
    paths = write_case(tmp_path, gt, results)
    weights = resample_weights(len(gt["images"]), 3, seed=11)
    assert (weights > 1).any() and (weights == 0).any()
    loaded, matches = match_lvis(*paths, iou_type)
    replicates = bootstrap_replicates(matches, loaded.frequency_groups(), weights)
    for row, weight in enumerate(weights):
        resampled = write_case(tmp_path, *_resampled_case(gt, results, weight), name=f"resample{row}")
        reference = evaluate_lvis(*resampled, iou_type, backend="lvis")
        for column, key in enumerate(("AP", "APr", "APc", "APf")):
            assert abs(replicates[row, column] - reference[key]) <= TOLERANCE, (row, key)


def test_bootstrap_intervals_are_deterministic_for_a_seed(tmp_path):
    gt, results = make_case(7)
    paths = write_case(tmp_path, gt, results)
    first = evaluate_lvis(*paths, "segm", bootstrap=30, seed=3)
    again = evaluate_lvis(*paths, "segm", bootstrap=30, seed=3)
    other = evaluate_lvis(*paths, "segm", bootstrap=30, seed=4)
    for key in ("AP", "APr", "APc", "APf"):
        low, high = first[f"{key}_ci95"]
        assert 0 <= low < high <= 1
        assert first[f"{key}_ci95"] == again[f"{key}_ci95"]
    assert first["AP_ci95"] != other["AP_ci95"]
    # The point estimates are the plain evaluation's.
    plain = evaluate_lvis(*paths, "segm")
    assert all(first[key] == plain[key] for key in plain)


def test_cli_bootstrap_writes_intervals(tmp_path, capsys):
    gt, results = make_case(8)
    gt_path, dt_path = write_case(tmp_path, gt, results)
    out = tmp_path / "metrics.json"
    argv = ["evaluate-lvis", "--ann", str(gt_path), "--results", str(dt_path), "--iou-type", "bbox",
            "--out", str(out), "--bootstrap", "20", "--seed", "1"]  # fmt: skip
    assert main(argv) == 0
    written = json.loads(out.read_text())
    assert len(written["APr_ci95"]) == 2
    assert "95% bootstrap interval of APr" in capsys.readouterr().out


def test_frequency_groups_follow_the_categories(tmp_path):
    gt, results = make_case(0)
    gt_path, _ = write_case(tmp_path, gt, results)
    loaded = load_ground_truth(gt_path, "bbox")
    letters = {c["id"]: c["frequency"] for c in gt["categories"]}
    for letter, group in zip("rcf", loaded.frequency_groups(), strict=True):
        assert {int(loaded.category_ids[k]) for k in group} == {i for i, f in letters.items() if f == letter}


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_per_class_ap_is_lvis_evals_and_averages_to_ap(tmp_path, iou_type):
    gt, results = make_case(12)
    paths = write_case(tmp_path, gt, results)
    fast = evaluate_lvis(*paths, iou_type, per_class=True)
    reference = evaluate_lvis(*paths, iou_type, backend="lvis", per_class=True)
    assert [r["category_id"] for r in fast["per_class"]] == sorted(c["id"] for c in gt["categories"])
    for ours, theirs in zip(fast["per_class"], reference["per_class"], strict=True):
        assert {k: v for k, v in ours.items() if k != "AP"} == {k: v for k, v in theirs.items() if k != "AP"}
        assert abs(ours["AP"] - theirs["AP"]) <= TOLERANCE, ours
    scored = [r["AP"] for r in fast["per_class"] if r["AP"] > -1]
    assert len(scored) < len(fast["per_class"])  # some categories have no ground truth in val
    assert np.mean(scored) == pytest.approx(fast["AP"], abs=1e-12)  # AP is the mean over the scored classes


def test_cli_writes_the_per_class_csv(tmp_path):
    gt, results = make_case(13, CaseSize(images=20, categories=25))
    gt_path, dt_path = write_case(tmp_path, gt, results)
    out, per_class = tmp_path / "metrics.json", tmp_path / "per_class.csv"
    argv = ["evaluate-lvis", "--ann", str(gt_path), "--results", str(dt_path), "--iou-type", "segm",
            "--out", str(out), "--per-class", str(per_class)]  # fmt: skip
    assert main(argv) == 0
    lines = per_class.read_text().splitlines()
    assert lines[0] == "category_id,name,frequency,image_count,instance_count,AP"
    assert len(lines) == 1 + len(gt["categories"])
    assert "per_class" not in json.loads(out.read_text())
