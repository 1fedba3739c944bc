"""``eqlv2 doctor``: report the install (torch, CUDA, mmcv's operators) and the GPUs, and refuse a broken one.

GPU jobs of the workflow run ``eqlv2 doctor --require-gpu`` first, so an mmcv without CUDA operators,
or without code for the card, fails the job in seconds with one line instead of after data loading.
"""

from __future__ import annotations

import argparse

from eqlv2.doctor import InstallProblem, diagnose, gather_facts, render_json, render_text


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check that torch, CUDA and mmcv's compiled operators fit the visible GPUs",
        description=(
            "Print the versions of torch, CUDA, cuDNN, NCCL, mmcv, mmdet and mmengine, whether mmcv's "
            "operators were compiled with CUDA and for which architectures, and the visible GPUs.  Exits "
            "non-zero when a GPU is visible but mmcv has no CUDA operators or none that runs on it.\n\n"
            "Example:\n  eqlv2 doctor\n  eqlv2 doctor --require-gpu --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--require-gpu", action="store_true", help="also fail when no GPU is visible (GPU jobs)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=command, verb="doctor")


def command(args: argparse.Namespace) -> None:
    facts = gather_facts()
    problems = diagnose(facts, require_gpu=args.require_gpu)
    print((render_json if args.json else render_text)(facts, problems), flush=True)
    if problems:
        raise InstallProblem("; ".join(problems))
