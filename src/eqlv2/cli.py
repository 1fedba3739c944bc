"""The ``eqlv2`` command: one verb per pipeline stage, each a thin wrapper over a library function."""

from __future__ import annotations

import argparse
import faulthandler
import importlib
import sys

from eqlv2.errors import NonFiniteLossError

# The verbs in the pipeline's order; each is the module eqlv2.tools.<verb with "_" for "-">.
VERBS = (
    "download",
    "unpack",
    "make-toy",
    "train",
    "launch-node",
    "surgery",
    "import-checkpoint",
    "test",
    "evaluate-lvis",
    "convert-openimages",
    "convert-predictions",
    "evaluate-openimages",
    "grouped-ap",
    "collect-metrics",
    "table",
    "per-class-table",
    "openimages-table",
    "plot",
    "doctor",
)


def build_parser(verbs: tuple[str, ...] = VERBS) -> argparse.ArgumentParser:
    """The command's parser with ``verbs`` in it: their modules are imported only here.

    A verb's module imports what it needs (torch and mmdet for training and inference, numba for the
    evaluator), so a run of one verb imports one module: ``eqlv2 evaluate-lvis`` then starts without
    paying for torch, mmengine and mmdet, seconds of every fresh process on a slow machine.
    """
    parser = argparse.ArgumentParser(
        prog="eqlv2",
        description="Equalization losses for long-tailed detection: the stages of the pipeline.",
    )
    subparsers = parser.add_subparsers(title="verbs", metavar="VERB")
    for verb in verbs:
        importlib.import_module(f"eqlv2.tools.{verb.replace('-', '_')}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A crash in native code (a CUDA library, mmcv's operators) prints the Python stack that led to it
    # in the job's log, instead of only the shell's "Segmentation fault".  The process's own stderr, also
    # when a caller (a test) has put something without a file descriptor in sys.stderr.
    if sys.__stderr__ is not None:
        faulthandler.enable(file=sys.__stderr__)
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser((argv[0],) if argv and argv[0] in VERBS else VERBS)
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
