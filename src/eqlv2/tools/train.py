"""``eqlv2 train``: train a detector with mmengine's Runner, resuming from the work dir when it can.

The work is :func:`eqlv2.engine.training.train`: resuming only the same run, atomic checkpoints, the
config's global batch divided over the processes, mixed precision on request.
"""

from __future__ import annotations

import argparse

from mmengine.config import DictAction

from eqlv2.engine.training import train


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a detector (resumes from the work dir)",
        description=(
            "Train an mmdet config with mmengine's Runner.  Rerunning the same command resumes from "
            "the last checkpoint in --work-dir; the final model is copied to --out.  The config's global "
            "batch (auto_scale_lr.base_batch_size) is divided over the processes, so fewer GPUs train "
            "with more images each.\n\nExample:\n"
            "  eqlv2 train toy/mask-rcnn_r18_fpn_ce_toy.py --data-root resources/toy "
            "--work-dir results/toy/baseline/train --out results/toy/baseline/model_final.pth"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="config file, or a name under the package's configs/")
    p.add_argument("--work-dir", required=True, help="logs and iteration checkpoints")
    p.add_argument("--out", required=True, help="where to put the final checkpoint")
    p.add_argument("--data-root", help="dataset folder (annotations/, train2017/, val2017/)")
    p.add_argument("--max-iters", type=int, help="train this many iterations, schedule rescaled")
    p.add_argument("--load-from", help="initial weights of a fresh run (e.g. a surgery checkpoint)")
    p.add_argument(
        "--launcher", choices=["none", "pytorch", "slurm"], default="none",
        help="distributed launcher (pytorch under torchrun)",
    )  # fmt: skip
    p.add_argument(
        "--amp", action="store_true",
        help="mixed precision (mmengine's AmpOptimWrapper, dynamic loss scaling); needs a CUDA GPU",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int,
        help="seed of the run (mmengine's randomness.seed: generators, samplers, loader workers)",
    )  # fmt: skip
    p.add_argument(
        "--deterministic", action="store_true",
        help="with --seed: deterministic torch kernels too (randomness.deterministic; slower on GPUs)",
    )  # fmt: skip
    p.add_argument(
        "--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
        help="override config entries, mmengine style",
    )  # fmt: skip
    p.set_defaults(func=command, verb="train")


def command(args: argparse.Namespace) -> None:
    if args.deterministic and args.seed is None:
        raise ValueError("--deterministic needs --seed (an unseeded run cannot be reproduced)")
    train(
        args.config, args.work_dir, args.out, args.data_root, args.cfg_options, args.max_iters,
        args.launcher, args.load_from, args.amp, args.seed, args.deterministic,
    )  # fmt: skip
