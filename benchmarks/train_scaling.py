"""Training throughput of the toy at 1, 2 and 4 processes, each run as the workflow runs it.

    .venv/bin/python benchmarks/train_scaling.py                      # 1, 2 and 4 processes, 30 iterations
    .venv/bin/python benchmarks/train_scaling.py --processes 1,2 --iters 10

One process is ``eqlv2 train``; N processes are ``torchrun --standalone --nproc-per-node=N -m eqlv2
train ... --launcher pytorch`` (gloo on a CPU, NCCL on GPUs), exactly the workflow's command.  The
global batch stays the config's (4 images for the toy: 4, 2 and 1 a process), so this is strong
scaling: the same optimizer steps, split over more processes.  Each process gets cores / N threads.
The figure is the median of mmengine's per-iteration ``time`` after ``--warmup`` iterations (start-up,
data-loader warm-up and the final checkpoint left out; the whole command's wall time is printed
beside it), as images per second and as the ratio to the 1-process figure measured in the same run.

On a CPU with fewer cores than processes the ratio measures contention, not communication: the table
prints the cores so that nobody reads a 2-core figure as a cluster's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = "toy/mask-rcnn_r18_fpn_ce_toy.py"
GLOBAL_BATCH = 4  # the toy configs' auto_scale_lr.base_batch_size


def machine() -> str:
    """The machine, in words: CPU model, cores, Python, torch."""
    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def command(processes: int, config: str, work: Path, data_root: Path, iters: int) -> list[str]:
    """The workflow's training command for this many processes (rules/common.smk, get_launch)."""
    bindir = Path(sys.executable).parent
    train = ["train", config, "--work-dir", str(work / "train"), "--out", str(work / "model.pth"),
             "--data-root", str(data_root), "--max-iters", str(iters),
             "--cfg-options", "default_hooks.logger.interval=1"]  # fmt: skip
    if processes == 1:
        return [str(bindir / "eqlv2"), *train]
    launch = [str(bindir / "torchrun"), "--standalone", f"--nproc-per-node={processes}", "-m", "eqlv2"]
    return [*launch, *train, "--launcher", "pytorch"]


def iteration_times(work_dir: Path) -> list[float]:
    """mmengine's per-iteration ``time`` (seconds), in iteration order, from the run's scalars.json."""
    scalars = sorted(work_dir.glob("*/vis_data/scalars.json"))
    if not scalars:
        raise RuntimeError(f"{work_dir}: no */vis_data/scalars.json (did the training log?)")
    rows = [json.loads(line) for line in scalars[-1].read_text().splitlines() if line.strip()]
    return [row["time"] for row in sorted(rows, key=lambda r: r["iter"]) if "time" in row]


def measure(processes: int, config: str, data_root: Path, work: Path, warmup: int, iters: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    result = subprocess.run(command(processes, config, work, data_root, warmup + iters),
                            capture_output=True, text=True, env=env)  # fmt: skip
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{processes} process(es): training failed:\n{result.stderr[-3000:]}")
    times = iteration_times(work / "train")[warmup:]
    if len(times) < iters:
        raise RuntimeError(f"{processes} process(es): {len(times)} timed iterations logged, {iters} asked")
    seconds = statistics.median(times)
    return {"processes": processes, "threads": threads, "seconds_per_iter": seconds,
            "images_per_second": GLOBAL_BATCH / seconds, "wall_seconds": wall}  # fmt: skip


def render(rows: list[dict], config: str, iters: int) -> str:
    base = rows[0]["images_per_second"]
    lines = [f"machine: {machine()}",
             f"config: {config}, global batch {GLOBAL_BATCH}, median of {iters} iterations",
             "processes  threads each  s/iter   images/s  ratio to 1  wall s (whole command)"]  # fmt: skip
    for row in rows:
        lines.append(
            f"{row['processes']:>9}  {row['threads']:>12}  {row['seconds_per_iter']:6.3f}  "
            f"{row['images_per_second']:9.2f}  {row['images_per_second'] / base:10.2f}  "
            f"{row['wall_seconds']:8.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", default="1,2,4", help="comma-separated, the first is the baseline")
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--iters", type=int, default=30, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    counts = [int(p) for p in args.processes.split(",")]
    bad = [p for p in counts if p < 1 or GLOBAL_BATCH % p]
    if bad:
        parser.error(f"--processes: {bad[0]} does not divide the global batch of {GLOBAL_BATCH}")

    from eqlv2.datasets.toy import ToySpec, make_toy

    tmp = Path(tempfile.mkdtemp(prefix="eqlv2-scaling-"))
    try:
        data_root = tmp / "toy"
        make_toy(data_root, ToySpec(seed=0, num_train_images=300, num_val_images=10,
                                    max_images_per_class=160, val_images_per_class=1))  # fmt: skip
        rows = [measure(p, args.config, data_root, tmp / f"p{p}", args.warmup, args.iters) for p in counts]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(render(rows, args.config, args.iters))
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    return rows


if __name__ == "__main__":
    main()
