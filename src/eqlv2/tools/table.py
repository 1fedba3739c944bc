"""``eqlv2 table``: the paper table (Markdown and CSV) from each method's ``metrics.json``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from eqlv2.methods import (
    METHODS,
    PUBLISHED_LVIS_V1_BBOX_AP,
    PUBLISHED_LVIS_V1_SEGM,
    REFERENCE_LVIS_V1_2X,
    Method,
    get_method,
)
from eqlv2.report.tables import write_table

SEGM_COLUMNS = ("AP", "APr", "APc", "APf")


def build_table(
    metrics_files: dict[str, str | Path], dataset: str, own: Mapping[str, Method] | None = None
) -> pd.DataFrame:
    """One row per method, in the paper's row order; numbers in percent with one decimal.

    For LVIS v1 the original's published mask numbers stand beside ours, with the difference.  Where the
    evaluation bootstrapped, each mask AP column has a ``± `` companion: half the 95% interval's width.
    The methods of one's own (``own``, keyed like ``metrics_files``) come after every known row, in the
    order of ``own``, and the ``note`` column says so.
    """
    rows = []
    methods = {key: get_method(key, own) for key in metrics_files}  # an unknown key fails here
    order = [*METHODS, *(own or {})]
    for key in sorted(methods, key=order.index):
        method, path = methods[key], metrics_files[key]
        metrics = json.loads(Path(path).read_text())
        for iou_type in ("bbox", "segm"):
            if iou_type not in metrics:
                raise ValueError(f"{path}: no '{iou_type}' metrics")
        row = {"method": method.name, "end2end": "√" if method.end2end else "×"}
        for column in SEGM_COLUMNS:
            row[column] = 100 * metrics["segm"][column]
            if f"{column}_ci95" in metrics["segm"]:  # half the width of the bootstrap interval
                low, high = metrics["segm"][f"{column}_ci95"]
                row[f"{column} ±"] = 100 * (high - low) / 2
        row["AP (box)"] = 100 * metrics["bbox"]["AP"]
        if dataset == "lvis_v1":
            published = PUBLISHED_LVIS_V1_SEGM.get(key)
            for column, value in zip(SEGM_COLUMNS, published or (None,) * 4, strict=True):
                row[f"{column} (paper)"] = value
                row[f"{column} Δ"] = None if value is None else row[column] - value
            row["AP (box, paper)"] = PUBLISHED_LVIS_V1_BBOX_AP.get(key)
            if key in REFERENCE_LVIS_V1_2X:  # shown for reference, no difference: another schedule
                row["AP (paper)"], row["AP (box, paper)"] = REFERENCE_LVIS_V1_2X[key]
        if method.own:
            row["note"] = "own method"
        elif method.beyond_paper:
            row["note"] = "beyond the paper" + ("; reference: mmdet, 2x" if key in REFERENCE_LVIS_V1_2X
                                                and dataset == "lvis_v1" else "")  # fmt: skip
        rows.append(row)
    frame = pd.DataFrame(rows).round(1)
    if "note" in frame:
        frame["note"] = frame["note"].fillna("")
    return frame


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "table",
        help="build the paper table from metrics.json files",
        description=(
            "Rows are methods, columns mask AP, APr, APc, APf and box AP (percent).\n\n"
            "Example:\n  eqlv2 table --dataset toy --metrics baseline=results/toy/baseline/metrics.json "
            "--md results/toy/paper_table.md --csv results/toy/paper_table.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="dataset name; lvis_v1 adds the paper's numbers")
    p.add_argument("--metrics", required=True, nargs="+", metavar="METHOD=METRICS_JSON", help="one per row")
    p.add_argument(
        "--own",
        nargs="+",
        default=[],
        metavar="METHOD=LABEL",
        help="the row label of a method of one's own (a key not in the paper's or today's rows); "
        "these rows follow the others, in this order",
    )
    p.add_argument(
        "--decoupled",
        nargs="+",
        default=[],
        metavar="METHOD",
        help="methods of one's own retrained from another's checkpoint (× in the end2end column)",
    )
    p.add_argument("--md", required=True, metavar="PATH", help="Markdown output")
    p.add_argument("--csv", required=True, metavar="PATH", help="CSV output")
    p.add_argument("--html", metavar="PATH", help="HTML output (the page the Snakemake report shows)")
    p.add_argument("--title", help="the HTML page's title (default: the paper table of DATASET)")
    p.set_defaults(func=command, verb="table")


def parse_named_paths(items: list[str], option: str) -> dict[str, str]:
    """``METHOD=PATH`` (or ``METHOD=LABEL``) command-line items as a dict; anything else is an error naming
    the option."""
    named = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep:
            raise ValueError(f"{option} expects METHOD=PATH, got '{item}'")
        named[key] = path
    return named


def own_methods(labels: dict[str, str], decoupled: list[str]) -> dict[str, Method]:
    """The rows of one's own from ``--own`` labels and the ``--decoupled`` keys among them."""
    for key in decoupled:
        if key not in labels:
            raise ValueError(f"--decoupled {key}: not a method of one's own (give it with --own {key}=LABEL)")
    for key in labels:
        if key in METHODS:
            raise ValueError(f"--own {key}: a known method, whose row label is '{METHODS[key].name}'")
    return {key: Method(key, name, key not in decoupled, own=True) for key, name in labels.items()}


def command(args: argparse.Namespace) -> None:
    own = own_methods(parse_named_paths(args.own, "--own"), args.decoupled)
    frame = build_table(parse_named_paths(args.metrics, "--metrics"), args.dataset, own)
    title = args.title or f"Paper table on {args.dataset} (percent)"
    print(write_table(frame, args.md, args.csv, args.html, title))
