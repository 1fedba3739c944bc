"""``eqlv2 evaluate-lvis``: LVIS v1 metrics of a result file, as a flat JSON object."""

from __future__ import annotations

import argparse

from eqlv2.evaluation.lvis import (
    BACKENDS,
    DETS_PER_CLASS,
    EVALUATION_IOU_TYPES,
    PROTOCOLS,
    evaluate_lvis,
    format_metrics,
    limit_label,
)
from eqlv2.evaluation.lvis_intervals import INTERVALS
from eqlv2.io import atomic_write_json, atomic_write_text


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-lvis",
        help="evaluate a COCO-style result file with the LVIS v1 protocol",
        description=(
            "Evaluate detections against an LVIS-format annotation file by the lvis package's protocol "
            "(300 detections per image) and write AP, AP50, AP75, APs/m/l, APr/c/f, AR@300, ARs/m/l@300 "
            "and ARr/c/f@300 (AR keys name --max-dets).  The default backend is this package's exact "
            "implementation of LVISEval (same numbers within 1e-9, tens of times faster); --backend lvis "
            "runs LVISEval itself.  --protocol fixed is Dave et al.'s AP_fixed: each category's "
            "--dets-per-class best detections over the split (10000), no per-image cap; its AR keys are "
            "AR@10000perclass etc.  --protocol pooled is their AP_pool (the same selection, one ranking "
            "of every category's detections, and of the r, c, f groups': AP_pool, APr_pool, APc_pool, "
            "APf_pool).  "
            "--iou-type boundary is Boundary AP "
            "(Cheng et al. 2021): the masks scored by min(mask IoU, boundary IoU).  --bootstrap N adds "
            "95% intervals of AP, APr, APc and APf "
            "(<key>_ci95) from N resamples of the images: by default half-samples without replacement "
            "(--interval subsampling, whose coverage benchmarks/interval_coverage.py measures), else "
            "resamples with replacement (percentile, bca).\n\nExample:\n  eqlv2 evaluate-lvis --ann "
            "resources/toy/annotations/lvis_v1_val.json --results predictions.segm.json --iou-type segm "
            "--bootstrap 200 --seed 0 --out metrics_segm.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--ann", required=True, metavar="GT_JSON", help="LVIS-format annotation file")
    p.add_argument("--results", required=True, metavar="DT_JSON", help="COCO-style result file")
    p.add_argument("--iou-type", required=True, choices=EVALUATION_IOU_TYPES)
    p.add_argument("--out", required=True, metavar="METRICS_JSON")
    p.add_argument(
        "--max-dets", type=int, default=300, help="detections kept per image (LVIS: 300; standard protocol)"
    )
    p.add_argument(
        "--protocol", choices=PROTOCOLS, default="standard",
        help="standard (a cap per image), fixed (AP_fixed: a cap per category) or pooled (AP_pool)",
    )  # fmt: skip
    p.add_argument(
        "--dets-per-class", type=int, default=DETS_PER_CLASS, metavar="K",
        help="detections kept per category under --protocol fixed or pooled (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--backend", choices=BACKENDS, default="fast", help="fast (default) or lvis, the reference"
    )
    p.add_argument(
        "--bootstrap", type=int, default=0, metavar="N", help="resamples for 95%% intervals (0: off)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples")
    p.add_argument(
        "--interval", choices=INTERVALS, default=INTERVALS[0], help="how resamples become intervals"
    )
    p.add_argument(
        "--per-class", metavar="CSV", help="also write each category's AP, group and training counts"
    )
    p.set_defaults(func=command, verb="evaluate-lvis")


def command(args: argparse.Namespace) -> None:
    metrics = evaluate_lvis(
        args.ann, args.results, args.iou_type, args.max_dets, args.backend, args.bootstrap, args.seed,
        protocol=args.protocol, dets_per_class=args.dets_per_class,
        per_class=bool(args.per_class), interval=args.interval,
    )  # fmt: skip
    print(f"{args.iou_type} AP")
    rows = metrics.pop("per_class", None)
    print(format_metrics(metrics, limit_label(args.protocol, args.max_dets, args.dets_per_class)))
    if rows is not None:
        import pandas as pd  # here: half a second of every evaluation's start-up otherwise

        atomic_write_text(args.per_class, pd.DataFrame(rows).to_csv(index=False))
    atomic_write_json(args.out, metrics)
