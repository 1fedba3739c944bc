"""``eqlv2 per-class-table``: every method's per-class AP in one CSV (:mod:`eqlv2.evaluation.per_class`)."""

from __future__ import annotations

import argparse

from eqlv2.evaluation.per_class import join_per_class
from eqlv2.io import atomic_write_text
from eqlv2.methods import METHODS
from eqlv2.tools.arguments import parse_seeds


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "per-class-table",
        help="join the per-class AP files of several methods into one CSV",
        description=(
            "One row a category (id, name, frequency group, training image and instance counts from "
            "--train-ann), one column a method's mask AP (--segm) and box AP (--bbox), in percent; a class "
            "without validation ground truth is left empty.  Methods appear in the paper table's order.\n\n"
            "Example:\n  eqlv2 per-class-table --train-ann resources/toy/annotations/lvis_v1_train.json "
            "--segm baseline=results/toy/baseline/per_class_segm.csv --bbox "
            "baseline=results/toy/baseline/per_class_bbox.csv --out results/toy/per_class_ap.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--train-ann", required=True, metavar="JSON", help="the training annotation file")
    for iou_type in ("segm", "bbox"):
        p.add_argument(f"--{iou_type}", nargs="+", default=[], metavar="METHOD=CSV",
                       help=f"evaluate-lvis --per-class output, --iou-type {iou_type}; a method given once "
                            "per seed gets the mean over its seeds")  # fmt: skip
    p.add_argument("--out", required=True, metavar="CSV")
    p.set_defaults(func=command, verb="per-class-table")


def command(args: argparse.Namespace) -> None:
    segm, bbox = parse_seeds(args.segm, "--segm"), parse_seeds(args.bbox, "--bbox")
    files: dict[str, dict[str, list[str]]] = {}
    for iou_type, named in (("segm", segm), ("bbox", bbox)):
        for method, path in named.items():
            files.setdefault(method, {})[iou_type] = path
    # The columns in the paper table's row order: the known methods first, then any others as given.
    given = list(files)
    known = list(METHODS)
    order = sorted(given, key=lambda m: (known.index(m) if m in known else len(known), given.index(m)))
    table = join_per_class({m: files[m] for m in order}, args.train_ann)
    atomic_write_text(args.out, table.to_csv(index=False))
    print(f"{args.out}: {len(table)} classes, {len(files)} methods")
