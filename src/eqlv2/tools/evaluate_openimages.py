"""``eqlv2 evaluate-openimages``: the OpenImages Challenge 2019 metric, written as the official file."""

from __future__ import annotations

import argparse
import math

from eqlv2.evaluation.openimages import evaluate_openimages, write_metrics_file


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-openimages",
        help="evaluate Challenge-format predictions with the OpenImages Challenge 2019 protocol",
        description=(
            "Compute the OpenImages Detection Challenge 2019 AP@0.5IOU (hierarchy expansion, "
            "image-level labels, group-of boxes) without TensorFlow, and write the metrics file the "
            "official oid_challenge_evaluation.py writes: the mAP line, then one AP line per class in "
            "the order of the class description file.\n\n"
            "Example:\n  eqlv2 evaluate-openimages "
            "--boxes annotations/challenge-2019-validation-detection-bbox.csv "
            "--image-labels annotations/challenge-2019-validation-detection-human-imagelabels.csv "
            "--hierarchy annotations/challenge-2019-label500-hierarchy.json "
            "--classes annotations/challenge-2019-classes-description-500.csv "
            "--predictions results.bbox.csv --out metrics.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--boxes", required=True, metavar="GT_CSV", help="ground-truth box CSV (not expanded)")
    p.add_argument("--image-labels", required=True, metavar="LABELS_CSV", help="image-level label CSV")
    p.add_argument("--hierarchy", required=True, metavar="HIERARCHY_JSON", help="class hierarchy JSON")
    p.add_argument("--classes", required=True, metavar="CLASSES_CSV", help="headerless MID,name CSV")
    p.add_argument("--predictions", required=True, metavar="PRED_CSV", help="ImageID,LabelName,Score,...")
    p.add_argument("--out", required=True, metavar="METRICS_CSV", help="the official metrics file")
    p.set_defaults(func=command, verb="evaluate-openimages")


def command(args: argparse.Namespace) -> None:
    mean, per_class = evaluate_openimages(
        args.boxes, args.image_labels, args.hierarchy, args.classes, args.predictions
    )
    with_gt = sum(not math.isnan(ap) for ap in per_class.values())
    print(f"mAP@0.5IOU {mean:.4f} over {with_gt} of {len(per_class)} classes with ground truth")
    write_metrics_file(args.out, mean, per_class)
