"""``eqlv2 doctor``: report the install (torch, CUDA, mmcv's operators) and the GPUs, and refuse a broken one.

GPU jobs of the workflow run ``eqlv2 doctor --require-gpu`` first, so an mmcv without CUDA operators,
or without code for the card, fails the job in seconds with one line instead of after data loading.
"""

from __future__ import annotations

import argparse

from eqlv2.doctor import (
    PROBE_TIMEOUT,
    InstallProblem,
    ProbeRunner,
    diagnose,
    gather_facts,
    render_json,
    render_text,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check that torch, CUDA and mmcv's compiled operators fit the visible GPUs",
        description=(
            "Print the versions of torch, CUDA, cuDNN, NCCL, mmcv, mmdet and mmengine, whether mmcv's "
            "operators were compiled with CUDA and for which architectures, and the visible GPUs; with a "
            "GPU, run nms and RoIAlign on it against the CPU.  Every question to native code runs in a child "
            "process with a time limit: one that crashes or hangs is a warning naming it, never the end of "
            "the doctor.  Exits non-zero only when the job cannot run: mmcv's operators do not import, a GPU "
            "is visible but mmcv has no CUDA operators or none that runs on it, nms/RoIAlign fail on it, or "
            "(--require-gpu) no GPU is visible.\n\n"
            "Example:\n  eqlv2 doctor\n  eqlv2 doctor --require-gpu --json\n  eqlv2 doctor --isolate"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--require-gpu", action="store_true", help="also fail when no GPU is visible (GPU jobs)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--isolate", action="store_true",
        help="every probe in a process of its own (slower; shows whether a crash needs an earlier probe)",
    )  # fmt: skip
    p.add_argument(
        "--probe-timeout", type=float, default=PROBE_TIMEOUT, metavar="SECONDS",
        help=f"stop a probe that has not answered after this long (default {PROBE_TIMEOUT:.0f})",
    )  # fmt: skip
    p.set_defaults(func=command, verb="doctor")


def command(args: argparse.Namespace) -> None:
    facts, probes = gather_facts(ProbeRunner(args.probe_timeout, args.isolate))
    diagnosis = diagnose(facts, args.require_gpu, probes)
    report = (
        render_json(facts, diagnosis, probes, args.isolate)
        if args.json
        else render_text(facts, diagnosis, probes)
    )
    print(report, flush=True)
    if diagnosis.problems:
        raise InstallProblem("; ".join(diagnosis.problems))
