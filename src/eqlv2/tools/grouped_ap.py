"""``eqlv2 grouped-ap``: mAP and AP1..AP5 (classes grouped by training frequency) of a metrics file."""

from __future__ import annotations

import argparse
import math

from eqlv2.evaluation.grouped_ap import counts_from_coco, grouped_ap, load_groups_table, parse_metrics_file
from eqlv2.io import atomic_write_json


def grouped_ap_report(metrics_file, train_ann=None, category_key: str = "freebase_id") -> dict:
    """``{"mAP", "AP1".."AP5", "groups", "counts"}`` for a metrics file; NaN written as None (null).

    Counts come from ``train_ann`` (a COCO-style training JSON) or, without it, the shipped table of the
    500 Challenge 2019 classes.
    """
    mean, per_class = parse_metrics_file(metrics_file)
    counts = counts_from_coco(train_ann, key=category_key) if train_ann else load_groups_table()
    source = str(train_ann) if train_ann else "groups-table"
    unknown = [mid for mid in per_class if mid not in counts]
    if unknown:
        raise ValueError(
            f"{metrics_file}: class {unknown[0]} has no training count in {source} "
            f"({len(unknown)} of {len(per_class)} classes unknown)"
        )
    groups = grouped_ap(per_class, counts)

    def clean(value: float) -> float | None:
        return None if math.isnan(value) else value

    report = {"mAP": clean(mean)}
    report.update({name: clean(group["AP"]) for name, group in groups.items()})
    report["groups"] = {name: {**group, "AP": clean(group["AP"])} for name, group in groups.items()}
    report["counts"] = source
    return report


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "grouped-ap",
        help="mAP and AP1..AP5 (rarest to most frequent fifth of the classes) of an OpenImages metrics file",
        description=(
            "Sort the classes by training instance count, cut them into five equal groups and report "
            "each group's mean AP (NaN classes left out), as the original's parse_openimage_metric.py "
            "did.  AP1 is the rarest group.\n\n"
            "Example:\n  eqlv2 grouped-ap --metrics metrics.csv --groups-table --out grouped_ap.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--metrics", required=True, metavar="METRICS_CSV", help="the official metrics file")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--groups-table", action="store_true", help="counts of the 500 Challenge 2019 classes (shipped)"
    )
    source.add_argument("--train-ann", metavar="COCO_JSON", help="count the annotations of a training JSON")
    p.add_argument(
        "--category-key",
        default="freebase_id",
        help="with --train-ann: the category field that names classes in the metrics file (freebase_id)",
    )
    p.add_argument("--out", required=True, metavar="JSON")
    p.set_defaults(func=command, verb="grouped-ap")


def command(args: argparse.Namespace) -> None:
    report = grouped_ap_report(args.metrics, args.train_ann, args.category_key)

    def show(value: float | None) -> str:
        return "nan" if value is None else f"{value:.4f}"

    print(" ".join(f"{key} {show(report[key])}" for key in ("mAP", "AP1", "AP2", "AP3", "AP4", "AP5")))
    atomic_write_json(args.out, report)
