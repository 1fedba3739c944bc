"""The ``eqlv2`` command: one verb per pipeline stage, each a thin wrapper over a library function."""

from __future__ import annotations

import argparse
import faulthandler
import sys

from eqlv2.engine.hooks import NonFiniteLossError
from eqlv2.tools import (
    collect_metrics,
    convert_openimages,
    convert_predictions,
    doctor,
    download,
    evaluate_lvis,
    evaluate_openimages,
    grouped_ap,
    import_checkpoint,
    launch_node,
    make_toy,
    openimages_table,
    per_class_table,
    plot,
    surgery,
    table,
    test,
    train,
    unpack,
)

VERBS = (
    download,
    unpack,
    make_toy,
    train,
    launch_node,
    surgery,
    import_checkpoint,
    test,
    evaluate_lvis,
    convert_openimages,
    convert_predictions,
    evaluate_openimages,
    grouped_ap,
    collect_metrics,
    table,
    per_class_table,
    openimages_table,
    plot,
    doctor,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eqlv2",
        description="Equalization losses for long-tailed detection: the stages of the pipeline.",
    )
    subparsers = parser.add_subparsers(title="verbs", metavar="VERB")
    for verb in VERBS:
        verb.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A crash in native code (a CUDA library, mmcv's operators) prints the Python stack that led to it
    # in the job's log, instead of only the shell's "Segmentation fault".  The process's own stderr, also
    # when a caller (a test) has put something without a file descriptor in sys.stderr.
    if sys.__stderr__ is not None:
        faulthandler.enable(file=sys.__stderr__)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help(sys.stderr)
        return 2
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, NonFiniteLossError) as err:  # the user's to fix: one line
        print(f"eqlv2 {args.verb}: error: {err}", file=sys.stderr)
        return 2
    return 0
