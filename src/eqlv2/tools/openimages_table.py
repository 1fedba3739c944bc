"""``eqlv2 openimages-table``: the original's OpenImages table (AP, AP1..AP5) from ``grouped-ap`` reports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from eqlv2.methods import OPENIMAGES_METHODS, PUBLISHED_OPENIMAGES, get_openimages_method
from eqlv2.report.tables import write_table
from eqlv2.tools.arguments import parse_named

COLUMNS = ("AP", "AP1", "AP2", "AP3", "AP4", "AP5")
REPORT_KEYS = ("mAP", "AP1", "AP2", "AP3", "AP4", "AP5")  # the same numbers, as `grouped-ap` names them


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def build_openimages_table(reports: dict[str, str | Path], dataset: str) -> pd.DataFrame:
    """One row per method in the original's order (backbone, then CE, EQL, EQLv2); AP@0.5 in percent.

    On the real data (``dataset == "openimages"``) the published numbers stand beside ours, with the
    difference.  A group whose classes all lack ground truth is shown empty, not as zero.
    """
    order = list(OPENIMAGES_METHODS)
    rows = []
    for key, path in sorted(
        reports.items(), key=lambda item: order.index(get_openimages_method(item[0]).key)
    ):
        report = json.loads(Path(path).read_text())
        missing = [name for name in REPORT_KEYS if name not in report]
        if missing:
            raise ValueError(f"{path}: no '{missing[0]}' (expected the JSON `eqlv2 grouped-ap` writes)")
        row = {"method": get_openimages_method(key).name}
        for column, name in zip(COLUMNS, REPORT_KEYS, strict=True):
            row[column] = _percent(report[name])
        if dataset == "openimages":
            published = PUBLISHED_OPENIMAGES.get(key, (None,) * len(COLUMNS))
            for column, value in zip(COLUMNS, published, strict=True):
                row[f"{column} (paper)"] = value
            for column, value in zip(COLUMNS, published, strict=True):
                ours = row[column]
                row[f"{column} Δ"] = None if value is None or ours is None else ours - value
        rows.append(row)
    return pd.DataFrame(rows).round(1)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "openimages-table",
        help="build the OpenImages table (AP, AP1..AP5) from grouped-ap reports",
        description=(
            "Rows are methods, columns AP@0.5 and AP1..AP5 (the rarest to the most frequent fifth of the "
            "classes), in percent; with --dataset openimages the original's numbers stand beside ours.\n\n"
            "Example:\n  eqlv2 openimages-table --dataset toy "
            "--reports r18_ce=results/toy/openimages/r18_ce/grouped_ap.json "
            "--md results/toy/openimages_table.md --csv results/toy/openimages_table.csv"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="dataset name; openimages adds the paper's numbers")
    p.add_argument(
        "--reports", required=True, nargs="+", metavar="METHOD=GROUPED_AP_JSON", help="one per row"
    )
    p.add_argument("--md", required=True, metavar="PATH", help="Markdown output")
    p.add_argument("--csv", required=True, metavar="PATH", help="CSV output")
    p.add_argument("--html", metavar="PATH", help="HTML output (the page the Snakemake report shows)")
    p.set_defaults(func=command, verb="openimages-table")


def command(args: argparse.Namespace) -> None:
    frame = build_openimages_table(parse_named(args.reports, "--reports"), args.dataset)
    title = f"OpenImages table on {args.dataset} (AP@0.5 and AP1..AP5, percent)"
    print(write_table(frame, args.md, args.csv, args.html, title))
