"""OpenImages Challenge 2019 metric, prediction conversion and grouped AP, on cases worked out by hand.

Boxes in the helpers are ``(xmin, ymin, xmax, ymax)`` in [0, 1]; the CSVs get the official column order.
The toy hierarchy is  root -> Animal -> {Cat, Dog};  root -> Car;  root -> Tree.
"""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from eqlv2.cli import main
from eqlv2.evaluation.grouped_ap import (
    assign_groups,
    counts_from_coco,
    grouped_ap,
    load_groups_table,
    parse_metrics_file,
)
from eqlv2.evaluation.openimages import (
    average_precision,
    convert_predictions,
    evaluate_openimages,
    format_metrics_file,
    precision_recall,
    write_metrics_file,
)

ANIMAL, CAT, DOG, CAR, TREE = "/m/animal", "/m/cat", "/m/dog", "/m/car", "/m/tree"
CLASSES = [ANIMAL, CAT, DOG, CAR, TREE]
PARENT = {CAT: ANIMAL, DOG: ANIMAL}
HIERARCHY = {
    "LabelName": "/m/root",
    "Subcategory": [
        {"LabelName": ANIMAL, "Subcategory": [{"LabelName": CAT}, {"LabelName": DOG}]},
        {"LabelName": CAR},
        {"LabelName": TREE},
    ],
}
A = (0.1, 0.1, 0.4, 0.4)  # three disjoint boxes
B = (0.6, 0.1, 0.9, 0.4)
C = (0.1, 0.6, 0.4, 0.9)


def _write_dataset(root, boxes, labels, preds):
    """Write the five input files; ``boxes`` (img, mid, box, group_of), ``labels`` (img, mid, confidence),
    ``preds`` (img, mid, score, box).  A ``Source`` column checks that columns are read by name."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        name: root / name
        for name in ("boxes.csv", "labels.csv", "hierarchy.json", "classes.csv", "preds.csv")
    }
    rows = ["ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsGroupOf"]
    rows += [f"{i},xclick,{m},1,{b[0]},{b[2]},{b[1]},{b[3]},0,{int(g)}" for i, m, b, g in boxes]
    paths["boxes.csv"].write_text("\n".join(rows) + "\n")
    rows = ["ImageID,Source,LabelName,Confidence"] + [f"{i},verification,{m},{c}" for i, m, c in labels]
    paths["labels.csv"].write_text("\n".join(rows) + "\n")
    paths["hierarchy.json"].write_text(json.dumps(HIERARCHY))
    paths["classes.csv"].write_text("".join(f'{m},"Name, of {m}"\n' for m in CLASSES))
    rows = ["ImageID,LabelName,Score,XMin,XMax,YMin,YMax"]
    rows += [f"{i},{m},{s!r},{b[0]!r},{b[2]!r},{b[1]!r},{b[3]!r}" for i, m, s, b in preds]
    paths["preds.csv"].write_text("\n".join(rows) + "\n")
    return [paths[n] for n in ("boxes.csv", "labels.csv", "hierarchy.json", "classes.csv", "preds.csv")]


def _evaluate(tmp_path, boxes, labels, preds):
    return evaluate_openimages(*_write_dataset(tmp_path / "data", boxes, labels, preds))


# ------------------------------------------------------------------------------------------ AP formula


def test_average_precision_of_a_known_curve():
    # Entries TP, FP, TP, TP with num_gt 5: precision 1, 1/2, 2/3, 3/4 at recall 1/5, 1/5, 2/5, 3/5.
    precision, recall = precision_recall(np.array([1, 0, 1, 1]), 5)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 3 / 4])
    np.testing.assert_allclose(recall, [1 / 5, 1 / 5, 2 / 5, 3 / 5])
    # Padded: recall 0, 1/5, 1/5, 2/5, 3/5, 1; precision 0, 1, 1/2, 2/3, 3/4, 0, made non-increasing
    # from the right: 1, 1, 3/4, 3/4, 3/4, 0 (the 2/3 is lifted to 3/4).  Recall changes at 1/5 (x1),
    # 2/5 (x3/4), 3/5 (x3/4) and 1 (x0): AP = 1/5 + 1/5 * 3/4 + 1/5 * 3/4 = 1/2.
    assert average_precision(precision, recall) == pytest.approx(1 / 2)
    assert average_precision(np.array([]), np.array([])) == 0.0  # ground truth, no detections
    assert average_precision(np.array([1.0]), np.array([1.0])) == 1.0


# ------------------------------------------------------------------------------------------------ rules


def test_hierarchy_expansion_lets_a_parent_detection_match_a_child_box(tmp_path):
    """A Cat box on i1 and a Dog box on i2 are Animal boxes too, so Animal has num_gt 2.

    Animal detections: 0.95 on i2 at an empty spot (FP), 0.9 on i1's cat (TP), 0.7 on i2's dog (TP).
    Precision 0, 1/2, 2/3 at recall 0, 1/2, 1; non-increasing: 2/3 everywhere; AP = 2/3.
    The Cat detection on i1 is a TP of Cat (AP 1); Dog has no detection (AP 0); Car, Tree: no GT.
    """
    boxes = [("i1", CAT, A, 0), ("i2", DOG, B, 0)]
    labels = [("i1", CAT, 1), ("i2", DOG, 1)]  # positive labels expand up to Animal as well
    preds = [("i2", ANIMAL, 0.95, C), ("i1", ANIMAL, 0.9, A), ("i2", ANIMAL, 0.7, B), ("i1", CAT, 0.8, A)]
    mean, per_class = _evaluate(tmp_path, boxes, labels, preds)
    assert list(per_class) == CLASSES
    assert per_class[ANIMAL] == pytest.approx(2 / 3)
    assert per_class[CAT] == 1.0
    assert per_class[DOG] == 0.0
    assert math.isnan(per_class[CAR]) and math.isnan(per_class[TREE])
    assert mean == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_a_class_not_verified_on_the_image_is_ignored(tmp_path):
    """Car is neither labelled nor boxed on i1, so the 0.99 Car detection there counts for nothing; the
    same for a detection on i9, an image in neither ground-truth file.  The only Car box (i3) is found
    at 0.5: AP 1.  (Were the 0.99 one a false positive, AP would be 1/2.)"""
    boxes = [("i1", CAT, A, 0), ("i3", CAR, B, 0)]
    labels = [("i1", CAT, 1), ("i3", CAR, 1)]
    preds = [("i1", CAR, 0.99, A), ("i9", CAR, 0.98, B), ("i3", CAR, 0.5, B)]
    _, per_class = _evaluate(tmp_path, boxes, labels, preds)
    assert per_class[CAR] == 1.0


def test_a_negative_label_makes_detections_false_positives(tmp_path):
    """Car is verified absent on i4: its 0.9 detection there is a FP ranked before the TP at 0.5 on i3,
    so precision at recall 1 is 1/2: AP(Car) = 1/2.  A negative Animal label on i5 expands down to Cat
    and Dog: the 0.9 Cat detection on i5 is a FP before the TP at 0.6 on i1: AP(Cat) = 1/2."""
    boxes = [("i3", CAR, B, 0), ("i1", CAT, A, 0)]
    labels = [("i3", CAR, 1), ("i4", CAR, 0), ("i1", CAT, 1), ("i5", ANIMAL, 0)]
    preds = [("i4", CAR, 0.9, B), ("i3", CAR, 0.5, B), ("i5", CAT, 0.9, A), ("i1", CAT, 0.6, A)]
    _, per_class = _evaluate(tmp_path, boxes, labels, preds)
    assert per_class[CAR] == pytest.approx(1 / 2)
    assert per_class[CAT] == pytest.approx(1 / 2)


def test_detections_inside_one_group_of_box_count_once(tmp_path):
    """i6: a group-of Tree box over the top half and a regular Tree box; num_gt = 1 + 1 = 2.

    Detections 0.9, 0.8 and 0.3 lie inside the group-of box: one TP at 0.9, the others ignored.  0.7 is
    in the bottom-left, outside both boxes: FP.  0.6 is on the regular box: TP.
    Entries 0.9 TP, 0.7 FP, 0.6 TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; non-increasing 1, 2/3, 2/3;
    AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
    """
    group, regular = (0.0, 0.0, 1.0, 0.5), (0.6, 0.6, 0.9, 0.9)
    boxes = [("i6", TREE, group, 1), ("i6", TREE, regular, 0)]
    labels = [("i6", TREE, 1)]
    preds = [("i6", TREE, 0.9, A), ("i6", TREE, 0.8, B), ("i6", TREE, 0.3, (0.05, 0.05, 0.95, 0.45)),
             ("i6", TREE, 0.7, C), ("i6", TREE, 0.6, regular)]  # fmt: skip
    _, per_class = _evaluate(tmp_path, boxes, labels, preds)
    assert per_class[TREE] == pytest.approx(5 / 6)


def test_intersection_over_the_detection_area_decides_group_of_matches(tmp_path):
    """A detection twice as tall as the group-of box has IoA 1/2 (matched, ignored) though its IoU is
    also 1/2 only with a box it contains; one three times as tall has IoA 1/3 (a FP).  Entries: group TP
    at 0.8, FP at 0.7; num_gt 1: AP 1.  Without the 0.8 detection the box is missed: AP 0."""
    group = (0.25, 0.25, 0.5, 0.5)  # exact binary fractions, so IoA is exactly 1/2
    boxes = [("i6", TREE, group, 1)]
    preds = [("i6", TREE, 0.8, (0.25, 0.25, 0.5, 0.75)), ("i6", TREE, 0.7, (0.25, 0.25, 0.5, 1.0))]
    _, per_class = _evaluate(tmp_path, boxes, [], preds)
    assert per_class[TREE] == 1.0
    _, per_class = _evaluate(tmp_path, boxes, [], preds[1:])
    assert per_class[TREE] == 0.0


def test_an_iou_of_exactly_one_half_matches(tmp_path):
    # A 0.5 x 0.25 detection inside a 0.5 x 0.5 box: IoU = 0.125 / 0.25 = 1/2 exactly (binary fractions).
    boxes = [("i7", DOG, (0.25, 0.25, 0.75, 0.75), 0)]
    _, per_class = _evaluate(tmp_path, boxes, [], [("i7", DOG, 0.9, (0.25, 0.25, 0.75, 0.5))])
    assert per_class[DOG] == 1.0


def test_a_group_of_box_whose_detections_all_score_zero_gives_no_true_positive(tmp_path):
    # As in the official code; the detection is absorbed (not a FP) and the box stays missed: AP 0.
    boxes = [("i6", TREE, A, 1)]
    _, per_class = _evaluate(tmp_path, boxes, [], [("i6", TREE, 0.0, A)])
    assert per_class[TREE] == 0.0


def test_a_duplicate_detection_of_a_matched_box_is_a_false_positive(tmp_path):
    """Dog boxes on i7 and i8.  0.9 and 0.8 both hit i7's box: TP then FP; 0.7 hits i8's box: TP.
    Precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1: AP = 1/2 + 1/2 * 2/3 = 5/6."""
    boxes = [("i7", DOG, A, 0), ("i8", DOG, A, 0)]
    preds = [("i7", DOG, 0.9, A), ("i7", DOG, 0.8, (0.11, 0.1, 0.41, 0.4)), ("i8", DOG, 0.7, A)]
    _, per_class = _evaluate(tmp_path, boxes, [], preds)
    assert per_class[DOG] == pytest.approx(5 / 6)


def test_a_duplicate_inside_a_group_of_box_is_absorbed_not_false(tmp_path):
    """Stage B sees every detection that is not a TP, duplicates included: the 0.8 duplicate of the
    regular box A also lies inside a group-of box over the whole image, which makes it one group TP.
    Entries 0.9 TP, 0.8 TP (group); num_gt 2: AP 1."""
    boxes = [("i7", DOG, A, 0), ("i7", DOG, (0.0, 0.0, 1.0, 1.0), 1)]
    preds = [("i7", DOG, 0.9, A), ("i7", DOG, 0.8, A)]
    _, per_class = _evaluate(tmp_path, boxes, [], preds)
    assert per_class[DOG] == 1.0


def test_a_detection_is_compared_with_its_best_box_only(tmp_path):
    """Dog boxes P, Q (P shifted right by 0.05; IoU(P, Q) = 0.14 / 0.18 = 0.78) and R elsewhere: num_gt 3.

    0.9 sits on P: TP.  0.7 sits on P too: its best box P is taken, and although its IoU with the free
    Q is 0.78 there is no fall-back (COCO matching would give it Q): FP.  Precision 1, 1/2 at recall
    1/3, 1/3: AP = 1/3 (with a fall-back it would be 2/3).  A detection nearer Q than P (IoU 0.95 with Q,
    0.74 with P) does take Q: 0.9 TP, 0.8 TP, 0.7 FP gives precision 1 up to recall 2/3: AP = 2/3.
    """
    p, q = (0.1, 0.1, 0.5, 0.5), (0.15, 0.1, 0.55, 0.5)
    boxes = [("i7", DOG, p, 0), ("i7", DOG, q, 0), ("i7", DOG, C, 0)]
    preds = [("i7", DOG, 0.9, p), ("i7", DOG, 0.7, p)]
    _, per_class = _evaluate(tmp_path, boxes, [], preds)
    assert per_class[DOG] == pytest.approx(1 / 3)
    _, per_class = _evaluate(tmp_path, boxes, [], [*preds, ("i7", DOG, 0.8, (0.16, 0.1, 0.56, 0.5))])
    assert per_class[DOG] == pytest.approx(2 / 3)


def test_invalid_detections_are_dropped_and_classes_without_detections_score_zero(tmp_path):
    boxes = [("i1", CAT, A, 0), ("i2", DOG, B, 0)]
    preds = [("i1", CAT, 0.99, (0.4, 0.1, 0.1, 0.4)), ("i1", CAT, 0.5, A)]  # the first has XMin > XMax
    mean, per_class = _evaluate(tmp_path, boxes, [], preds)
    assert per_class[CAT] == 1.0 and per_class[DOG] == 0.0 and per_class[ANIMAL] == 0.0
    assert mean == pytest.approx(1 / 3)


# ------------------------------------------------------------------------- against a plain reference


def _reference_ap(boxes, labels, preds):
    """The rules written as plain loops, one detection at a time, for the randomised comparison."""

    def up(mid):
        return [mid] + ([PARENT[mid]] if mid in PARENT else [])

    def down(mid):
        return [mid] + [child for child, parent in PARENT.items() if parent == mid]

    def inter(a, b):
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    def area(a):
        return (a[2] - a[0]) * (a[3] - a[1])

    gt = [(i, m2, b, g) for i, m, b, g in boxes for m2 in up(m)]
    verified = {(i, m2) for i, m, c in labels for m2 in (up(m) if c == 1 else down(m))}
    verified |= {(i, m) for i, m, _, _ in gt}
    images = sorted({i for i, *_ in boxes} | {i for i, *_ in labels})
    entries = {m: [] for m in CLASSES}
    for image in images:
        for mid in CLASSES:
            if (image, mid) not in verified:
                continue
            dets = [(s, b) for i, m, s, b in preds if i == image and m == mid and b[0] < b[2] and b[1] < b[3]]
            dets.sort(key=lambda d: -d[0])
            regular = [b for i, m, b, g in gt if i == image and m == mid and not g]
            group = [b for i, m, b, g in gt if i == image and m == mid and g]
            taken, tp, absorbed = [False] * len(regular), [False] * len(dets), [False] * len(dets)
            for k, (_, b) in enumerate(dets):
                if regular:
                    ious = [inter(b, r) / (area(b) + area(r) - inter(b, r)) for r in regular]
                    j = ious.index(max(ious))
                    if ious[j] >= 0.5 and not taken[j]:
                        taken[j] = tp[k] = True
            best = [0.0] * len(group)
            for k, (s, b) in enumerate(dets):
                if not tp[k] and group:
                    ioas = [inter(b, g) / area(b) for g in group]
                    j = ioas.index(max(ioas))
                    if ioas[j] >= 0.5:
                        absorbed[k] = True
                        best[j] = max(best[j], s)
            entries[mid] += [(s, tp[k]) for k, (s, _) in enumerate(dets) if not absorbed[k]]
            entries[mid] += [(s, True) for s in best if s > 0]
    result = {}
    for mid in CLASSES:
        num_gt = sum(1 for _, m, _, _ in gt if m == mid)
        if num_gt == 0:
            result[mid] = math.nan
            continue
        ordered = sorted(entries[mid], key=lambda e: -e[0])
        precision, recall, hits = [], [], 0
        for n, (_, is_tp) in enumerate(ordered, start=1):
            hits += is_tp
            precision.append(hits / n)
            recall.append(hits / num_gt)
        rec, prec = [0.0, *recall, 1.0], [0.0, *precision, 0.0]
        for k in range(len(prec) - 2, -1, -1):
            prec[k] = max(prec[k], prec[k + 1])
        result[mid] = sum((rec[k] - rec[k - 1]) * prec[k] for k in range(1, len(rec)) if rec[k] != rec[k - 1])
    return result


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_plain_loop_implementation_on_random_data(tmp_path, seed):
    rng = random.Random(seed)

    def box():
        x, y = rng.choice([0.0, 0.1, 0.2, 0.5]), rng.choice([0.0, 0.1, 0.3, 0.5])
        return (x, y, x + rng.choice([0.2, 0.3, 0.5]), y + rng.choice([0.2, 0.4, 0.5]))

    def jitter(b):
        return tuple(v + rng.uniform(-0.04, 0.04) for v in b)

    leaves = [CAT, DOG, CAR, TREE]
    boxes, labels, preds = [], [], []
    for n in range(20):
        image = f"img{n:02d}"
        for _ in range(rng.randint(0, 4)):
            boxes.append((image, rng.choice(leaves + [ANIMAL]), box(), rng.random() < 0.25))
        for mid in rng.sample(CLASSES, 2):
            labels.append((image, mid, int(rng.random() < 0.5)))
        for i, m, b, _ in [x for x in boxes if x[0] == image]:
            for _ in range(rng.randint(0, 3)):
                preds.append(
                    (i, rng.choice([m, m, PARENT.get(m, m), rng.choice(CLASSES)]), rng.random(), jitter(b))
                )
        for _ in range(rng.randint(0, 3)):
            preds.append((image, rng.choice(CLASSES), rng.random(), box()))
    preds.append(("elsewhere", CAT, 0.5, A))
    _, per_class = _evaluate(tmp_path, boxes, labels, preds)
    expected = _reference_ap(boxes, labels, preds)
    assert sum(not math.isnan(v) for v in expected.values()) >= 4
    for mid in CLASSES:
        assert per_class[mid] == pytest.approx(expected[mid], abs=1e-12, nan_ok=True), mid


# ------------------------------------------------------------------------------- metrics file, parser


def test_metrics_file_format(tmp_path):
    path = write_metrics_file(tmp_path / "metrics.csv", 0.5, {CAT: 0.25, DOG: math.nan, CAR: 0.75})
    assert path.read_text().splitlines() == [
        "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU,0.5",
        "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU//m/cat,0.25",
        "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU//m/dog,nan",
        "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU//m/car,0.75",
    ]
    mean, per_class = parse_metrics_file(path)
    assert mean == 0.5 and list(per_class) == [CAT, DOG, CAR]
    assert per_class[CAT] == 0.25 and math.isnan(per_class[DOG])


def test_parser_reads_both_mid_forms(tmp_path):
    """Old TensorFlow printed the MID as bytes (b'/m/..'), newer as text; the original parsed only bytes."""
    path = tmp_path / "metrics.csv"
    path.write_text(
        "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU,0.431\n"
        "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU/b'/m/011k07',0.5\n"
        "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU//m/011q46kg,0.25\n"
        "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU/b'/m/012074',nan\n"
    )
    mean, per_class = parse_metrics_file(path)
    assert mean == 0.431
    assert list(per_class) == ["/m/011k07", "/m/011q46kg", "/m/012074"]
    assert per_class["/m/011k07"] == 0.5 and per_class["/m/011q46kg"] == 0.25
    assert math.isnan(per_class["/m/012074"])


def test_parser_rejects_other_lines(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("OpenImagesDetectionChallenge_Precision/mAP@0.5IOU,0.4\nsomething else\n")
    with pytest.raises(ValueError, match="line 2"):
        parse_metrics_file(path)


# -------------------------------------------------------------------------------------------- grouped


def test_grouped_ap_on_ten_classes():
    """Sorted by count (stable): e1 j2 | b3 c7 | g7 f20 | a50 i60 | d100 h400 (c before g: class order)."""
    counts = {"a": 50, "b": 3, "c": 7, "d": 100, "e": 1, "f": 20, "g": 7, "h": 400, "i": 60, "j": 2}
    assert assign_groups(counts) == [["e", "j"], ["b", "c"], ["g", "f"], ["a", "i"], ["d", "h"]]
    aps = {"e": 0.1, "j": math.nan, "b": 0.2, "c": 0.4, "g": 0.5, "f": 0.7, "a": math.nan, "i": math.nan,
           "d": 0.8, "h": 1.0}  # fmt: skip
    groups = grouped_ap(aps, counts)
    assert groups["AP1"]["AP"] == pytest.approx(0.1)  # j's NaN is skipped, not counted as 0
    assert groups["AP1"]["evaluated"] == 1 and groups["AP1"]["classes"] == 2
    assert groups["AP2"]["AP"] == pytest.approx(0.3)
    assert groups["AP3"]["AP"] == pytest.approx(0.6)
    assert math.isnan(groups["AP4"]["AP"])
    assert groups["AP5"]["AP"] == pytest.approx(0.9)
    assert (groups["AP5"]["instance_count_min"], groups["AP5"]["instance_count_max"]) == (100, 400)


def test_shipped_table_gives_the_original_groups():
    counts = load_groups_table()
    table = json.loads((_data_dir() / "openimages_challenge2019_groups.json").read_text())
    assert len(counts) == 500 and sum(counts.values()) == table["instance_count_total"]
    groups = assign_groups(counts)
    assert [len(g) for g in groups] == [100] * 5
    for mine, theirs in zip(groups, table["groups"], strict=True):
        assert set(mine) == {c["freebase_id"] for c in theirs["classes"]}
        assert min(counts[m] for m in mine) == theirs["instance_count_min"]
        assert max(counts[m] for m in mine) == theirs["instance_count_max"]
    # AP1 is the rarest 100: every count in it is below every count in AP2.
    assert max(counts[m] for m in groups[0]) < min(counts[m] for m in groups[1])
    assert "/m/0h8ntjv" in groups[0]  # Pressure cooker, 14 boxes


def _data_dir():
    from importlib import resources

    return resources.files("eqlv2.data")


def test_grouped_ap_cli_with_the_shipped_table(tmp_path, capsys):
    """AP = 0.1 * (group number) for every class, one NaN in AP1: the groups' means are 0.1 .. 0.5."""
    counts = load_groups_table()
    groups = assign_groups(counts)
    aps = {mid: 0.1 * (g + 1) for g, members in enumerate(groups) for mid in members}
    aps[groups[0][0]] = math.nan
    metrics = tmp_path / "metrics.csv"
    lines = ["OpenImagesDetectionChallenge_Precision/mAP@0.5IOU,0.3"]
    lines += [f"OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU/b'{m}',{aps[m]}" for m in counts]
    metrics.write_text("\n".join(lines) + "\n")
    out = tmp_path / "grouped.json"
    assert main(["grouped-ap", "--metrics", str(metrics), "--groups-table", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["mAP"] == 0.3
    for g in range(5):
        assert report[f"AP{g + 1}"] == pytest.approx(0.1 * (g + 1))
    assert report["groups"]["AP1"]["evaluated"] == 99
    assert "mAP 0.3000 AP1 0.1000" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------- conversion


def _coco(tmp_path):
    ann = {
        "images": [{"id": 1, "file_name": "val/0a1b2c.jpg", "width": 200, "height": 100},
                   {"id": 2, "file_name": "x.jpg", "openimages_id": "ffee", "width": 100, "height": 50}],
        "categories": [{"id": 1, "name": "Cat", "freebase_id": CAT},
                       {"id": 2, "name": "Dog", "freebase_id": DOG}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1]}],
    }  # fmt: skip
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))
    return path


def test_convert_predictions_normalises_and_clips(tmp_path):
    results = [
        # x 20..70 of 200 -> 0.1..0.35; y 10..50 of 100 -> 0.1..0.5
        {"image_id": 1, "category_id": 1, "bbox": [20, 10, 50, 40], "score": 0.87654321},
        # x -10..290 of 100 -> clipped 0..1; y 45..95 of 50 -> 0.9..clipped 1
        {"image_id": 2, "category_id": 2, "bbox": [-10, 45, 300, 50], "score": 0.5},
    ]
    path = tmp_path / "results.bbox.json"
    path.write_text(json.dumps(results))
    out = tmp_path / "results.bbox.csv"
    assert convert_predictions(path, _coco(tmp_path), out) == 2
    assert out.read_text().splitlines() == [
        "ImageID,LabelName,Score,XMin,XMax,YMin,YMax",
        "0a1b2c,/m/cat,0.876543,0.100000,0.350000,0.100000,0.500000",
        "ffee,/m/dog,0.500000,0.000000,1.000000,0.900000,1.000000",
    ]


def test_convert_then_evaluate_then_group_through_the_cli(tmp_path, capsys):
    """The Cat box on 0a1b2c found exactly (AP 1); the Dog box on ffee missed (AP 0); Animal has both
    boxes by expansion but no detection (AP 0): mAP 1/3 over the three classes with ground truth.

    Training counts Cat 1, Dog 2, Car 3, Tree 4, Animal 5 make one class per group:
    AP1 = Cat = 1, AP2 = Dog = 0, AP3 = Car and AP4 = Tree have no ground truth (null), AP5 = Animal = 0.
    """
    ann = _coco(tmp_path)
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps([{"image_id": 1, "category_id": 1, "bbox": [20, 10, 60, 40], "score": 0.9}])
    )
    data = tmp_path / "data"
    boxes, labels, hierarchy, classes, _ = _write_dataset(
        data, [("0a1b2c", CAT, (0.1, 0.1, 0.4, 0.5), 0), ("ffee", DOG, A, 0)], [], []
    )
    preds, metrics, grouped = data / "converted.csv", tmp_path / "metrics.csv", tmp_path / "grouped.json"
    assert (
        main(["convert-predictions", "--results", str(results), "--ann", str(ann), "--out", str(preds)]) == 0
    )
    assert main(["evaluate-openimages", "--boxes", str(boxes), "--image-labels", str(labels),
                 "--hierarchy", str(hierarchy), "--classes", str(classes), "--predictions", str(preds),
                 "--out", str(metrics)]) == 0  # fmt: skip
    mean, per_class = parse_metrics_file(metrics)
    assert mean == pytest.approx(1 / 3)
    assert per_class[CAT] == 1.0 and per_class[DOG] == 0.0 and per_class[ANIMAL] == 0.0
    assert "mAP@0.5IOU 0.3333 over 3 of 5 classes" in capsys.readouterr().out
    train = tmp_path / "train.json"
    train.write_text(json.dumps({
        "categories": [{"id": k, "name": m, "freebase_id": m} for k, m in enumerate(CLASSES, start=1)],
        "annotations": [{"id": 10 * k + n, "image_id": 1, "category_id": k}
                        for k, count in zip(range(1, 6), (5, 1, 2, 3, 4), strict=True) for n in range(count)],
    }))  # fmt: skip
    assert (
        main(["grouped-ap", "--metrics", str(metrics), "--train-ann", str(train), "--out", str(grouped)]) == 0
    )
    report = json.loads(grouped.read_text())
    assert report["mAP"] == pytest.approx(1 / 3)
    assert [report[f"AP{g}"] for g in range(1, 6)] == [1.0, 0.0, None, None, 0.0]
    assert report["counts"] == str(train)
    assert "mAP 0.3333 AP1 1.0000 AP2 0.0000 AP3 nan AP4 nan AP5 0.0000" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ CLI errors


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_missing_column_is_a_one_line_error(tmp_path, capsys):
    boxes, labels, hierarchy, classes, preds = _write_dataset(tmp_path, [("i1", CAT, A, 0)], [], [])
    boxes.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax\ni1,/m/cat,0.1,0.4,0.1,0.4\n")
    out = tmp_path / "metrics.csv"
    argv = ["evaluate-openimages", "--boxes", str(boxes), "--image-labels", str(labels),
            "--hierarchy", str(hierarchy), "--classes", str(classes), "--predictions", str(preds),
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("eqlv2 evaluate-openimages: error: ")
    assert str(boxes) in line and "'IsGroupOf'" in line
    assert not out.exists()
    _write_dataset(tmp_path, [("i1", CAT, A, 0)], [], [])  # good boxes again, predictions without Score
    preds.write_text("ImageID,LabelName,XMin,XMax,YMin,YMax\n")
    assert main(argv) == 2
    line = _error_line(capsys)
    assert str(preds) in line and "'Score'" in line


@pytest.mark.parametrize(
    ("content", "message"),
    [("ImageID,LabelName,Score,XMin,XMax,YMin,YMax\ni1,/m/cow,0.5,0,1,0,1\n", "'/m/cow'"),
     ("ImageID,LabelName,Score,XMin,XMax,YMin,YMax\ni1,/m/cat,high,0,1,0,1\n", "column 'Score'"),
     ("", "empty file")],
)  # fmt: skip
def test_bad_predictions_are_one_line_errors(tmp_path, capsys, content, message):
    boxes, labels, hierarchy, classes, preds = _write_dataset(tmp_path, [("i1", CAT, A, 0)], [], [])
    preds.write_text(content)
    out = tmp_path / "metrics.csv"
    assert main(["evaluate-openimages", "--boxes", str(boxes), "--image-labels", str(labels), "--hierarchy",
                 str(hierarchy), "--classes", str(classes), "--predictions", str(preds),
                 "--out", str(out)]) == 2  # fmt: skip
    line = _error_line(capsys)
    assert str(preds) in line and message in line
    assert not out.exists()


def test_other_verbs_fail_with_one_line(tmp_path, capsys):
    ann = _coco(tmp_path)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 0.9}]))
    out = tmp_path / "out.csv"
    assert main(["convert-predictions", "--results", str(results), "--ann", str(ann), "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert line.startswith("eqlv2 convert-predictions: error: ") and "'category_id'" in line
    assert not out.exists()
    metrics = tmp_path / "metrics.csv"
    write_metrics_file(metrics, 0.5, {"/m/not_a_challenge_class": 0.5})
    assert main(["grouped-ap", "--metrics", str(metrics), "--groups-table", "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert str(metrics) in line and "/m/not_a_challenge_class" in line
    assert (
        main(["grouped-ap", "--metrics", str(tmp_path / "absent.csv"), "--groups-table", "--out", str(out)])
        == 2
    )
    assert "absent.csv does not exist" in _error_line(capsys)
    with pytest.raises(SystemExit) as exit_info:  # neither --groups-table nor --train-ann
        main(["grouped-ap", "--metrics", str(metrics), "--out", str(out)])
    assert exit_info.value.code == 2
    assert not out.exists()


def test_counts_from_a_training_json(tmp_path):
    ann = json.loads(_coco(tmp_path).read_text())
    ann["annotations"] += [
        {"id": 2, "image_id": 1, "category_id": 2},
        {"id": 3, "image_id": 2, "category_id": 2},
    ]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(ann))
    assert counts_from_coco(path) == {CAT: 0, DOG: 3}
    assert counts_from_coco(path, key="name") == {"Cat": 0, "Dog": 3}
    assert counts_from_coco(path, mapping={1: "x", 2: "y"}) == {"x": 0, "y": 3}


def test_format_is_what_the_writer_writes(tmp_path):
    text = format_metrics_file(math.nan, {CAT: math.nan})
    assert text == (
        "OpenImagesDetectionChallenge_Precision/mAP@0.5IOU,nan\n"
        "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU//m/cat,nan\n"
    )
