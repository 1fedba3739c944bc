"""``eqlv2 plot KIND``: one picture of the report (:mod:`eqlv2.report.plots`) from the workflow's files."""

from __future__ import annotations

import argparse

from eqlv2.methods import METHODS, OPENIMAGES_METHODS
from eqlv2.report import plots
from eqlv2.tools.arguments import parse_named, parse_seeds

KINDS = ("ap-vs-frequency", "group-ap", "gradient-ratio", "loss-curves", "openimages-groups")


def row_label(key: str, openimages: bool = False) -> str:
    """The paper table's label of a known method; a method of one's own keeps its key."""
    known = OPENIMAGES_METHODS if openimages else METHODS
    return known[key].name if key in known else key


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "plot",
        help="draw one of the report's plots",
        description=(
            "KIND and its inputs (METHOD=PATH, one per series; a method given once per seed is drawn as\n"
            "the mean over its seeds, its gradients summed over them):\n"
            "  ap-vs-frequency    --per-class results/<d>/per_class_ap.csv --methods M ...\n"
            "  group-ap           --inputs M=results/<d>/<M>/metrics.json ...\n"
            "  gradient-ratio     --inputs M=.../<M>/train/classifier_gradients.pt ... --train-ann J\n"
            "  loss-curves        --inputs M=results/<d>/<M>/train ...\n"
            "  openimages-groups  --inputs M=results/<d>/openimages/<M>/grouped_ap.json ...\n\n"
            "Example:\n  eqlv2 plot group-ap --inputs baseline=results/toy/baseline/metrics.json "
            "eqlv2=results/toy/eqlv2/metrics.json --out results/toy/plots/group_ap.png"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--inputs", nargs="+", default=[], metavar="METHOD=PATH")
    p.add_argument("--per-class", metavar="CSV", help="ap-vs-frequency: the per-class table")
    p.add_argument("--methods", nargs="+", default=[], metavar="METHOD", help="ap-vs-frequency: its series")
    p.add_argument("--train-ann", metavar="JSON", help="gradient-ratio: the training annotation file")
    p.add_argument("--out", required=True, metavar="PNG_OR_SVG")
    p.set_defaults(func=command, verb="plot")


def command(args: argparse.Namespace) -> None:
    if args.kind == "openimages-groups":  # the OpenImages branch trains each method once
        inputs = parse_named(args.inputs, "--inputs")
    else:
        inputs = parse_seeds(args.inputs, "--inputs")
    labels = {key: row_label(key, args.kind == "openimages-groups") for key in [*inputs, *args.methods]}
    if args.kind == "ap-vs-frequency":
        if not args.per_class or not args.methods:
            raise ValueError("ap-vs-frequency needs --per-class CSV and --methods")
        out = plots.plot_ap_vs_frequency(args.per_class, args.out, {m: labels[m] for m in args.methods})
    elif not inputs:
        raise ValueError(f"{args.kind} needs --inputs METHOD=PATH ...")
    elif args.kind == "group-ap":
        out = plots.plot_group_ap(inputs, args.out, labels)
    elif args.kind == "gradient-ratio":
        if not args.train_ann:
            raise ValueError("gradient-ratio needs --train-ann (classes are sorted by training instances)")
        out = plots.plot_gradient_ratio(inputs, args.train_ann, args.out, labels)
    elif args.kind == "loss-curves":
        out = plots.plot_loss_curves(inputs, args.out, labels)
    else:
        out = plots.plot_openimages_groups(inputs, args.out, labels)
    print(out)
