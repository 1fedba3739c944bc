"""``eqlv2 convert-predictions``: mmdet's COCO-style result JSON to the OpenImages Challenge CSV."""

from __future__ import annotations

import argparse

from eqlv2.evaluation.openimages import convert_predictions


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-predictions",
        help="convert a COCO-style result JSON to the OpenImages Challenge prediction CSV",
        description=(
            "Write ImageID,LabelName,Score,XMin,XMax,YMin,YMax, one row per detection: coordinates "
            "divided by the image size from the annotation JSON and clipped to [0, 1], ImageID from "
            "the image's openimages_id or file_name stem, LabelName from the category's freebase_id.\n\n"
            "Example:\n  eqlv2 convert-predictions --results results.bbox.json "
            "--ann annotations/openimages_challenge_2019_val_bbox.json --out results.bbox.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--results", required=True, metavar="RESULTS_JSON", help="COCO-style result file")
    p.add_argument(
        "--ann", required=True, metavar="COCO_JSON", help="the annotation JSON the model was tested on"
    )
    p.add_argument("--out", required=True, metavar="PRED_CSV")
    p.set_defaults(func=command, verb="convert-predictions")


def command(args: argparse.Namespace) -> None:
    rows = convert_predictions(args.results, args.ann, args.out)
    print(f"wrote {rows} detections to {args.out}")
