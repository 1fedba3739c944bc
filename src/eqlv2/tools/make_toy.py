"""``eqlv2 make-toy``: generate the embedded long-tailed dataset."""

from __future__ import annotations

import argparse
import dataclasses
import time

from eqlv2.datasets.toy import ToySpec, make_toy


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "make-toy",
        help="generate the embedded long-tailed dataset in the LVIS v1 schema",
        description=(
            "Write a synthetic long-tailed instance-segmentation dataset: images under "
            "OUT_DIR/{train,val}2017 and OUT_DIR/annotations/lvis_v1_{train,val}.json.\n\n"
            "Example:\n  eqlv2 make-toy resources/toy --seed 0"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out_dir", metavar="OUT_DIR")
    defaults = ToySpec()
    p.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default 0)")
    for field in dataclasses.fields(ToySpec):
        if field.name == "seed":
            continue
        p.add_argument(
            "--" + field.name.replace("_", "-"),
            type=type(field.default),
            default=field.default,
            help=f"default {field.default}",
        )
    p.set_defaults(func=command, verb="make-toy")


def command(args: argparse.Namespace) -> None:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ToySpec)}
    spec = ToySpec(**values)
    start = time.perf_counter()
    written = make_toy(args.out_dir, spec)
    seconds = time.perf_counter() - start
    for split, path in written.items():
        print(f"wrote {path} ({split})")
    print(f"make-toy finished in {seconds:.1f} s")
