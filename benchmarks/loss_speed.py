"""Forward + backward time of EQLv2, EQL, ECM and GroupSoftmax against the plain loss each one replaces.

Run on demand: ``.venv/bin/python benchmarks/loss_speed.py [--rois N] [--classes C] [--repeats R]
[--threads T]``.  The defaults are one iteration of an LVIS v1 box head: N = 1024 RoIs (2 images x 512
sampled RoIs), C = 1203 classes, on the CPU with 2 threads.

Why these baselines: EQLv2, EQL and ECM are sigmoid losses, so the cost to beat is
``F.binary_cross_entropy_with_logits(z, one_hot, reduction='sum') / N`` on the same logits and one-hot
targets (built before the clock starts); GroupSoftmax replaces the softmax cross-entropy over C + 1
logits.  The target is at most 1.5x the baseline.

The input looks like a training batch: a quarter of the RoIs are foreground (mmdet's sampler's
``pos_fraction``), their labels drawn from a long-tailed class distribution with LVIS v1's shape (200
classes under 10 training instances, 412 under 100, 334 under 1000, 257 above, scaled to C), the rest
background.  The losses read their class statistics from a temporary LVIS-format annotation file with
those counts; EQL's tail is the classes under 100 instances (``frequency='instance'``).

Each repetition times every loss and every baseline once, in a rotating order, so that a slower or
faster stretch of a shared machine hits them alike; the table gives the medians after warm-up.  The exit
code is 0 whatever the result; each row says PASS or FAIL.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from eqlv2.models import EQL, EQLv2, GroupSoftmax
from eqlv2.models.losses import ECMLoss

TARGET_RATIO = 1.5
# LVIS v1's classes by training instance count, as BAGS groups them: (classes, lowest, highest count);
# the group sizes are LVIS v1's, the highest count of the last group is a round figure.
LVIS_V1_GROUPS = ((200, 1, 9), (412, 10, 99), (334, 100, 999), (257, 1000, 50000))
FG_FRACTION = 0.25
EQL_TAIL_INSTANCES = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rois", "-n", type=int, default=1024, help="RoIs per call (N). Default 1024.")
    parser.add_argument("--classes", "-c", type=int, default=1203, help="Foreground classes C. Default 1203.")
    parser.add_argument("--repeats", "-r", type=int, default=30, help="Timed repetitions. Default 30.")
    parser.add_argument("--warmup", type=int, default=5, help="Untimed repetitions first. Default 5.")
    parser.add_argument("--threads", "-t", type=int, default=2, help="torch.set_num_threads. Default 2.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the synthetic batch. Default 0.")
    args = parser.parse_args(argv)
    if min(args.rois, args.repeats, args.threads) < 1 or args.warmup < 0 or args.classes < 4:
        parser.error("--rois, --repeats and --threads must be >= 1, --warmup >= 0, --classes >= 4")
    return args


def long_tailed_counts(num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """Training instances per class, LVIS v1's group sizes scaled to ``num_classes``, log-uniform within."""
    total = sum(size for size, _, _ in LVIS_V1_GROUPS)
    sizes = [round(size * num_classes / total) for size, _, _ in LVIS_V1_GROUPS[:-1]]
    sizes.append(num_classes - sum(sizes))
    counts = []
    for size, (_, low, high) in zip(sizes, LVIS_V1_GROUPS, strict=True):
        log_counts = torch.empty(size).uniform_(math.log(low), math.log(high), generator=gen)
        counts.append(log_counts.exp().round().clamp(low, high))
    return torch.cat(counts)[torch.randperm(num_classes, generator=gen)]


def write_annotations(path: Path, counts: torch.Tensor) -> None:
    """An LVIS-format file with the category fields EQL and GroupSoftmax read (one annotated image)."""
    categories = [
        {"id": i + 1, "name": f"c{i}", "image_count": int(n), "instance_count": int(n)}
        for i, n in enumerate(counts.tolist())
    ]
    path.write_text(json.dumps({"categories": categories, "annotations": [{"id": 1, "image_id": 1}]}))


def sample_labels(num_rois: int, counts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A quarter foreground, drawn in proportion to the instance counts; the rest background (label C)."""
    num_classes = counts.numel()
    fg = torch.multinomial(counts / counts.sum(), num_rois, replacement=True, generator=gen)
    is_fg = torch.rand(num_rois, generator=gen) < FG_FRACTION
    return torch.where(is_fg, fg, num_classes)


def forward_backward(loss_fn: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor) -> float:
    """Seconds for one forward and backward of ``loss_fn`` on the leaf ``logits``."""
    logits.grad = None
    start = time.perf_counter()
    loss_fn(logits).backward()
    return time.perf_counter() - start


def build_cases(args: argparse.Namespace, ann_file: str, counts: torch.Tensor, gen: torch.Generator) -> list:
    """(name, loss, baseline name, baseline) rows; each callable maps its own leaf logits to a loss."""
    n, c = args.rois, args.classes
    labels = sample_labels(n, counts, gen)

    eqlv2 = EQLv2(num_classes=c)
    eql = EQL(num_classes=c, lambda_=EQL_TAIL_INSTANCES, ann_file=ann_file, frequency="instance")
    bags = GroupSoftmax(num_classes=c, ann_file=ann_file)
    ecm = ECMLoss(num_classes=c, ann_file=ann_file)  # C + 1 logits; its one-hot is built inside the clock
    one_hot_bg = F.one_hot(labels, c + 1).float()  # background on the last channel (EQLv2's layout)
    one_hot_no_bg = one_hot_bg[:, :c].contiguous()  # background RoIs all zero (EQL's layout)

    def leaf(channels: int) -> torch.Tensor:
        # around the sigmoid prior of the classifier bias, spread as in training
        return (torch.randn(n, channels, generator=gen) * 2 - 4).requires_grad_()

    def plain_bce(target: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda z: F.binary_cross_entropy_with_logits(z, target, reduction="sum") / n

    return [
        ("EQLv2", lambda z: eqlv2(z, labels), leaf(c + 1),
         "sigmoid BCE (C+1)", plain_bce(one_hot_bg), leaf(c + 1)),
        ("EQL", lambda z: eql(z, labels), leaf(c), "sigmoid BCE (C)", plain_bce(one_hot_no_bg), leaf(c)),
        ("ECM", lambda z: ecm(z, labels), leaf(c + 1),
         "sigmoid BCE (C+1)", plain_bce(one_hot_bg), leaf(c + 1)),
        ("GroupSoftmax", lambda z: bags(z, labels), leaf(bags.num_channels),
         "softmax CE (C+1)", lambda z: F.cross_entropy(z, labels), leaf(c + 1)),
    ]  # fmt: skip


def machine() -> str:
    """Processor, CPU count and torch version, for the table's footer."""
    processor = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        processor = names[0] if names else processor
    return (
        f"{processor or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # GroupSoftmax draws its "others" RoIs from the global generator
    gen = torch.Generator().manual_seed(args.seed)
    counts = long_tailed_counts(args.classes, gen)
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = Path(tmp) / "train.json"
        write_annotations(ann_file, counts)
        cases = build_cases(args, str(ann_file), counts, gen)

    timed = [(name, fn, z) for row in cases for name, fn, z in (row[:3], row[3:])]
    times: dict[str, list[float]] = {name: [] for name, _, _ in timed}
    for rep in range(args.warmup + args.repeats):
        shift = rep % len(timed)
        for name, fn, z in timed[shift:] + timed[:shift]:
            seconds = forward_backward(fn, z)
            if rep >= args.warmup:
                times[name].append(seconds)
    median_ms = {name: 1000 * statistics.median(values) for name, values in times.items()}

    print(
        f"forward + backward, N = {args.rois} RoIs, C = {args.classes} classes, median of {args.repeats} "
        f"interleaved repetitions after {args.warmup} warm-up"
    )
    header = f"{'loss':<13} {'median ms':>10}  {'baseline':<18} {'median ms':>10} {'ratio':>6}  target"
    print(header)
    print("-" * len(header))
    for name, _, _, base, _, _ in cases:
        ratio = median_ms[name] / median_ms[base]
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(
            f"{name:<13} {median_ms[name]:>10.2f}  {base:<18} {median_ms[base]:>10.2f} {ratio:>5.2f}x  "
            f"<= {TARGET_RATIO}x {verdict}"
        )
    print(f"machine: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
