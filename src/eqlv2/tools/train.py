"""``eqlv2 train``: train a detector with mmengine's Runner, resuming from the work dir when it can.

A rerun of the same command after an interruption (preemption, a killed job) continues from the last
checkpoint in ``--work-dir``: that is what makes rerunning a Snakemake rule cheap.  Only the same run is
resumed: the work dir records a fingerprint of the resolved config and initial weights, and checkpoints
of any other run are moved aside rather than resumed.  Iteration checkpoints are written atomically
(:mod:`eqlv2.engine.atomic_backend`), and the finished model is copied to ``--out`` atomically, so the
presence of ``--out`` means training completed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import time
from pathlib import Path

import torch
from mmengine.config import DictAction
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import find_latest_checkpoint

from eqlv2.checkpoint import allow_mmengine_checkpoints, load_checkpoint
from eqlv2.compat import import_lvis
from eqlv2.config import load_run_config
from eqlv2.distributed import prepare_launcher
from eqlv2.engine.atomic_backend import BACKEND_NAME as ATOMIC_BACKEND
from eqlv2.io import atomic_copy, atomic_write_json

_ITER = re.compile(r"iter_(\d+)\.pth")


def rescale_schedule(cfg, max_iters: int) -> None:
    """Change the number of iterations, moving every scheduler boundary in proportion.

    A quick run then keeps the shape of the full schedule (warm-up, steps at the same fractions).
    """
    old = cfg.train_cfg.max_iters
    factor = max_iters / old
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters + 1
    for scheduler in cfg.get("param_scheduler") or []:
        if scheduler.get("by_epoch", True):
            raise ValueError("--max-iters needs iteration-based schedulers (by_epoch=False)")
        for key in ("begin", "end"):
            if key in scheduler:
                scheduler[key] = max(1 if key == "end" else 0, round(scheduler[key] * factor))
        if "milestones" in scheduler:
            scheduler["milestones"] = [max(1, round(m * factor)) for m in scheduler["milestones"]]


def check_init_checkpoint(model, path: str | Path) -> None:
    """Refuse initial weights that do not fit the model (mmengine would only warn and train on).

    Keys the model lacks or the checkpoint lacks are expected (surgery removes ``fc_cls``; LWS adds
    scales); a weight whose shape differs means the wrong checkpoint or a wrong class count.
    """
    checkpoint = load_checkpoint(path)
    state = checkpoint.get("state_dict", checkpoint)
    own = (model.module if is_model_wrapper(model) else model).state_dict()
    common = [k for k in state if k in own]
    if not common:
        raise ValueError(f"{path}: none of its {len(state)} weights belongs to this model")
    wrong = [k for k in common if torch.is_tensor(state[k]) and state[k].shape != own[k].shape]
    if wrong:
        first = wrong[0]
        raise ValueError(
            f"{path}: {len(wrong)} weight(s) do not fit the model, e.g. {first}: "
            f"{tuple(state[first].shape)} in the checkpoint, {tuple(own[first].shape)} in the model"
        )


RUN_FINGERPRINT = "eqlv2_run.json"


def run_fingerprint(cfg, load_from: str | Path | None) -> str:
    """sha256 of what decides a run's result: the resolved config and the initial weights' file.

    Where the run writes (``work_dir``), how it is launched and whether it resumes are left out.  The
    initial weights are identified by path, size and modification time (hashing a 300 MB checkpoint at
    every start would cost more than it protects).
    """
    resolved = cfg.to_dict()
    for key in ("work_dir", "launcher", "resume", "load_from"):
        resolved.pop(key, None)
    if load_from is not None:
        stat = Path(load_from).stat()
        resolved["eqlv2_initial_weights"] = [str(Path(load_from).resolve()), stat.st_size, stat.st_mtime_ns]
    text = json.dumps(resolved, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def prepare_work_dir(work_dir: Path, fingerprint: str) -> Path | None:
    """Make ``work_dir`` hold checkpoints of this exact run only; return where stale ones were moved.

    A work dir whose checkpoints come from another config (a changed schedule, a retrained baseline
    before surgery) must not be resumed: it is renamed aside, never deleted.
    """
    marker = work_dir / RUN_FINGERPRINT
    stale = None
    if work_dir.is_dir() and any(work_dir.iterdir()):
        previous = json.loads(marker.read_text())["fingerprint"] if marker.is_file() else None
        if previous != fingerprint:
            stale = work_dir.with_name(f"{work_dir.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
            work_dir.rename(stale)
    work_dir.mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        atomic_write_json(marker, {"fingerprint": fingerprint})
    return stale


def _wait_for_work_dir(work_dir: Path, fingerprint: str, timeout: float = 600) -> None:
    """Ranks other than 0 wait until rank 0 has prepared the work dir for this run."""
    marker = work_dir / RUN_FINGERPRINT
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.is_file() and json.loads(marker.read_text())["fingerprint"] == fingerprint:
            return
        time.sleep(0.2)
    raise RuntimeError(f"rank 0 did not prepare {work_dir} within {timeout} s")


def write_checkpoints_atomically(cfg) -> None:
    """Point the checkpoint hook at :class:`AtomicLocalBackend`, unless the config chose a storage."""
    hook = cfg.get("default_hooks", {}).get("checkpoint")
    if hook is not None and hook.get("backend_args") is None and hook.get("file_client_args") is None:
        hook["backend_args"] = dict(backend=ATOMIC_BACKEND)


def latest_checkpoint(work_dir: str | Path) -> str | None:
    """The checkpoint to resume from: the one ``last_checkpoint`` names, or else the newest ``iter_N.pth``.

    mmengine writes ``last_checkpoint`` right after each checkpoint, in place; should it be missing or
    name a file that is not there, the newest complete iteration checkpoint is still a safe start.
    """
    named = find_latest_checkpoint(str(work_dir))
    if named and Path(named).is_file():
        return named
    found = [
        (int(m.group(1)), p) for p in Path(work_dir).glob("iter_*.pth") if (m := _ITER.fullmatch(p.name))
    ]
    return str(max(found)[1]) if found else None


def train(
    config: str | Path,
    work_dir: str | Path,
    out: str | Path,
    data_root: str | Path | None = None,
    cfg_options: dict | None = None,
    max_iters: int | None = None,
    launcher: str = "none",
    load_from: str | Path | None = None,
) -> Path:
    """Train ``config``, resuming from ``work_dir`` if it holds a checkpoint; return ``out``.

    ``load_from`` (a surgery checkpoint, for decoupled training) initialises a fresh run only.
    """
    allow_mmengine_checkpoints()
    import_lvis()
    cfg = load_run_config(config, data_root, cfg_options, split="train")
    if max_iters is not None:
        rescale_schedule(cfg, max_iters)
    cfg.work_dir = str(work_dir)
    prepare_launcher(cfg, launcher)
    write_checkpoints_atomically(cfg)
    if load_from is not None and not Path(load_from).is_file():
        raise FileNotFoundError(f"checkpoint {load_from} does not exist")
    fingerprint = run_fingerprint(cfg, load_from)
    stale = None
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun sets RANK; the process group does not exist yet
        stale = prepare_work_dir(Path(work_dir), fingerprint)
    else:
        _wait_for_work_dir(Path(work_dir), fingerprint)
    latest = latest_checkpoint(work_dir)
    if latest:
        # Resume this run; `load_from` of the config (a surgery checkpoint) only seeds a fresh run.
        cfg.resume = True
        cfg.load_from = latest
    else:
        cfg.resume = False
        if load_from is not None:
            cfg.load_from = str(load_from)
    runner = Runner.from_cfg(cfg)
    if stale:
        runner.logger.info(f"eqlv2: {work_dir} held another run's checkpoints; moved them to {stale}")
    if latest:
        runner.logger.info(f"eqlv2: resuming from {latest}")
    elif load_from is not None:
        check_init_checkpoint(runner.model, load_from)
    runner.train()
    if runner.rank != 0:  # rank 0 writes the checkpoints, and publishes the final one
        return Path(out)
    final = latest_checkpoint(work_dir)
    if final is None:
        raise RuntimeError(f"training finished but {work_dir} holds no checkpoint")
    atomic_copy(final, out)
    return Path(out)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a detector (resumes from the work dir)",
        description=(
            "Train an mmdet config with mmengine's Runner.  Rerunning the same command resumes from "
            "the last checkpoint in --work-dir; the final model is copied to --out.\n\nExample:\n"
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
        "--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
        help="override config entries, mmengine style",
    )  # fmt: skip
    p.set_defaults(func=command, verb="train")


def command(args: argparse.Namespace) -> None:
    train(
        args.config, args.work_dir, args.out, args.data_root, args.cfg_options, args.max_iters,
        args.launcher, args.load_from,
    )  # fmt: skip
