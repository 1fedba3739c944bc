"""Where a toy training iteration and a toy inference spend their time: seconds, and torch's operators.

    .venv/bin/python benchmarks/toy_profile.py                       # the embedded default's baseline
    .venv/bin/python benchmarks/toy_profile.py --config toy/mask-rcnn_r18_fpn_eqlv2-loss_toy.py

Generates a toy dataset like the embedded default's (fewer images: per-iteration cost depends on the
image size and the batch, not on the dataset's size), builds the config's model, data loader and
optimizer as ``eqlv2 train`` does, and prints: seconds per training iteration (median of ``--iters``
after warm-up), seconds per validation image at inference (300 detections, masks included), and for
each the operators with the most self CPU time (torch.profiler), so that a cut goes where the time is.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml


def _profile(step, repeats: int) -> str:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=48)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default="toy/mask-rcnn_r18_fpn_ce_toy.py")
    parser.add_argument("--iters", type=int, default=20, help="timed training iterations")
    parser.add_argument("--images", type=int, default=40, help="timed validation images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--cfg-options",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="overrides to try, e.g. model.roi_head.mask_roi_extractor.roi_layer.sampling_ratio=2",
    )
    args = parser.parse_args()
    options = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in args.cfg_options)}
    torch.set_num_threads(args.threads)

    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner

    import eqlv2.plugin  # noqa: F401  (registers the modules)
    from eqlv2.config import load_run_config
    from eqlv2.datasets.toy import ToySpec, make_toy

    init_default_scope("mmdet")
    with tempfile.TemporaryDirectory() as tmp:
        make_toy(Path(tmp), ToySpec(seed=0, num_train_images=300, num_val_images=args.images,
                                    max_images_per_class=160, val_images_per_class=1))  # fmt: skip
        cfg = load_run_config(args.config, tmp, options, split="train")
        model = MODELS.build(cfg.model)
        model.init_weights()
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        batches = iter(Runner.build_dataloader(cfg.train_dataloader, seed=0))
        model.train()

        def train_step() -> None:
            model.train_step(next(batches), optim)

        for _ in range(3):
            train_step()
        seconds = []
        for _ in range(args.iters):
            start = time.perf_counter()
            train_step()
            seconds.append(time.perf_counter() - start)
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        print(f"machine: {machine}, torch {torch.__version__}, {args.threads} threads")
        print(f"config: {args.config} {options or ''}")
        print(f"\ntraining: {statistics.median(seconds):.3f} s per iteration "
              f"(median of {args.iters}, batch {cfg.train_dataloader.batch_size})")  # fmt: skip
        print(_profile(train_step, 5))

        test_cfg = load_run_config(args.config, tmp, options, split="test")
        model.eval()
        images = list(Runner.build_dataloader(test_cfg.test_dataloader, seed=0))
        start = time.perf_counter()
        with torch.no_grad():
            for batch in images:
                model.test_step(batch)
        total = time.perf_counter() - start
        print(f"\ninference: {total / args.images:.3f} s per validation image ({args.images} images)")
        with torch.no_grad():
            print(_profile(lambda: [model.test_step(b) for b in images[:3]], 1))


if __name__ == "__main__":
    main()
