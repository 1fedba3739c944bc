"""``eqlv2 table``: the paper table (Markdown and CSV) from each method's ``metrics.json``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from eqlv2.methods import (
    METHODS,
    PUBLISHED_LVIS_V1_BBOX_AP,
    PUBLISHED_LVIS_V1_SEGM,
    REFERENCE_LVIS_V1_1X,
    REFERENCE_LVIS_V1_2X,
    Method,
    get_method,
)
from eqlv2.report.tables import write_table
from eqlv2.tools.arguments import parse_named, parse_seeds

SEGM_COLUMNS = ("AP", "APr", "APc", "APf")


def _read_metrics(path: str | Path) -> dict:
    metrics = json.loads(Path(path).read_text())
    for iou_type in ("bbox", "segm"):
        if iou_type not in metrics:
            raise ValueError(f"{path}: no '{iou_type}' metrics")
    return metrics


def _seed_columns(runs: list[dict]) -> dict[str, float]:
    """Mask AP, APr, APc, APf and box AP of one method in percent: the mean over its seeds with the sample
    standard deviation (``<column> sd``) when there are several, else the single run with its bootstrap
    half-width (``<column> ±``) where its evaluation computed one."""
    row: dict[str, float] = {}
    for column in SEGM_COLUMNS:
        values = np.array([100 * run["segm"][column] for run in runs])
        row[column] = values.mean()
        if len(runs) > 1:
            row[f"{column} sd"] = values.std(ddof=1)
        elif f"{column}_ci95" in runs[0]["segm"]:  # half the width of the bootstrap interval
            low, high = runs[0]["segm"][f"{column}_ci95"]
            row[f"{column} ±"] = 100 * (high - low) / 2
    row["AP (box)"] = float(np.mean([100 * run["bbox"]["AP"] for run in runs]))
    return row


def build_table(
    metrics_files: Mapping[str, str | Path | Sequence[str | Path]],
    dataset: str,
    own: Mapping[str, Method] | None = None,
) -> pd.DataFrame:
    """One row per method, in the paper's row order; numbers in percent with one decimal.

    A method may name one ``metrics.json`` or one per seed.  With several seeds the row is their mean,
    each mask AP column has a ``<column> sd`` companion (the standard deviation over seeds, the spread a
    rerun shows) and a ``seeds`` column counts them; with one run per method, a ``<column> ±`` companion
    holds half the bootstrap 95% interval where the evaluation computed one.  For LVIS v1 the original's
    published mask numbers stand beside ours, with the difference.  The methods of one's own (``own``,
    keyed like ``metrics_files``) come after every known row, in the order of ``own``, and the ``note``
    column says so.
    """
    rows = []
    methods = {key: get_method(key, own) for key in metrics_files}  # an unknown key fails here
    runs = {
        key: [_read_metrics(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
        for key, paths in metrics_files.items()
    }
    several_seeds = any(len(r) > 1 for r in runs.values())
    order = [*METHODS, *(own or {})]
    for key in sorted(methods, key=order.index):
        method = methods[key]
        row: dict = {"method": method.name, "end2end": "√" if method.end2end else "×"}
        if several_seeds:
            row["seeds"] = len(runs[key])
        row.update(_seed_columns(runs[key]))
        if dataset == "lvis_v1":
            published = PUBLISHED_LVIS_V1_SEGM.get(key)
            for column, value in zip(SEGM_COLUMNS, published or (None,) * 4, strict=True):
                row[f"{column} (paper)"] = value
                row[f"{column} Δ"] = None if value is None else row[column] - value
            row["AP (box, paper)"] = PUBLISHED_LVIS_V1_BBOX_AP.get(key)
            if key in REFERENCE_LVIS_V1_2X:  # shown for reference, no difference: another schedule
                row["AP (paper)"], row["AP (box, paper)"] = REFERENCE_LVIS_V1_2X[key]
            if key in REFERENCE_LVIS_V1_1X:  # shown for reference, no difference: another recipe
                row["AP (paper)"], row["AP (box, paper)"] = REFERENCE_LVIS_V1_1X[key]
        if method.own:
            row["note"] = "own method"
        elif method.beyond_paper:
            row["note"] = "beyond the paper"
            if dataset == "lvis_v1" and key in REFERENCE_LVIS_V1_2X:
                row["note"] += "; reference: mmdet, 2x"
            if dataset == "lvis_v1" and key in REFERENCE_LVIS_V1_1X:
                row["note"] += "; reference: ECM-Loss, 1x with RFS + normed heads"
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
    p.add_argument(
        "--metrics", required=True, nargs="+", metavar="METHOD=METRICS_JSON",
        help="one per row, or one per seed (a method given several times: mean ± sd over them)",
    )  # fmt: skip
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
    own = own_methods(parse_named(args.own, "--own"), args.decoupled)
    frame = build_table(parse_seeds(args.metrics, "--metrics"), args.dataset, own)
    title = args.title or f"Paper table on {args.dataset} (percent)"
    if "seeds" in frame:
        title += "; mean ± standard deviation over seeds"
    print(write_table(frame, args.md, args.csv, args.html, title))
