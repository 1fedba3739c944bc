"""``eqlv2 collect-metrics``: join one method's bbox and segm metrics into ``metrics.json``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from eqlv2.evaluation.lvis import metric_keys
from eqlv2.io import atomic_write_json


def collect_metrics(named: dict[str, str | Path]) -> dict[str, dict]:
    """Read ``{iou_type: path}`` flat metric files into ``{iou_type: metrics}``, checking each.

    The 16 metrics are required (AR keys under whichever detection limit the file names); bootstrap
    intervals (``*_ci95``) are carried along when present.
    """
    collected = {}
    for iou_type, path in named.items():
        metrics = json.loads(Path(path).read_text())
        limits = [key[3:] for key in metrics if key.startswith("AR@") and key[3:].isdigit()]
        keys = metric_keys(int(limits[0]) if len(limits) == 1 else 300)
        missing = [k for k in keys if k not in metrics]
        if missing:
            raise ValueError(f"{path}: missing metric(s) {', '.join(missing)}")
        intervals = [k for k in metrics if k.endswith("_ci95")]
        collected[iou_type] = {k: metrics[k] for k in (*keys, *intervals)}
    return collected


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "collect-metrics",
        help="join per-IoU-type metric files into one metrics.json",
        description=(
            "Example:\n  eqlv2 collect-metrics --bbox metrics_bbox.json --segm metrics_segm.json "
            "--out metrics.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bbox", metavar="JSON", help="output of evaluate-lvis --iou-type bbox")
    p.add_argument("--segm", metavar="JSON", help="output of evaluate-lvis --iou-type segm")
    p.add_argument("--out", required=True, metavar="METRICS_JSON")
    p.set_defaults(func=command, verb="collect-metrics")


def command(args: argparse.Namespace) -> None:
    named = {k: getattr(args, k) for k in ("bbox", "segm") if getattr(args, k)}
    if not named:
        raise ValueError("give --bbox, --segm or both")
    atomic_write_json(args.out, collect_metrics(named))
