"""A training run's identity and its work dir: what makes rerunning ``eqlv2 train`` resume safely.

The work dir records a fingerprint of the resolved config and of the initial weights; checkpoints of any
other run are moved aside rather than resumed.  Iteration checkpoints are written atomically
(:mod:`eqlv2.engine.atomic_backend`), and a resumed run starts from the newest complete one.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from pathlib import Path

import torch
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import find_latest_checkpoint

from eqlv2.checkpoint import load_checkpoint
from eqlv2.engine.atomic_backend import BACKEND_NAME as ATOMIC_BACKEND
from eqlv2.io import atomic_write_json

RUN_FINGERPRINT = "eqlv2_run.json"
_ITER = re.compile(r"iter_(\d+)\.pth")


def run_fingerprint(cfg, load_from: str | Path | None, global_batch: int) -> str:
    """sha256 of what decides a run's result: the resolved config, the global batch, the initial weights.

    Where the run writes (``work_dir``), how it is launched and whether it resumes are left out; so is the
    per-process batch, which only says how the global batch is spread over the processes: a run may
    resume on another number of GPUs.  The initial weights are identified by path, size and modification
    time (hashing a 300 MB checkpoint at every start would cost more than it protects).
    """
    resolved = cfg.to_dict()
    for key in ("work_dir", "launcher", "resume", "load_from"):
        resolved.pop(key, None)
    resolved["train_dataloader"].pop("batch_size", None)
    resolved["eqlv2_global_batch"] = global_batch
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


def wait_for_work_dir(work_dir: Path, fingerprint: str, timeout: float = 600) -> None:
    """Ranks other than 0 wait until rank 0 has prepared the work dir for this run."""
    marker = work_dir / RUN_FINGERPRINT
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.is_file() and json.loads(marker.read_text())["fingerprint"] == fingerprint:
            return
        time.sleep(0.2)
    raise RuntimeError(f"rank 0 did not prepare {work_dir} within {timeout} s")


def write_checkpoints_atomically(cfg) -> bool:
    """Point the checkpoint hook at :class:`AtomicLocalBackend`, unless the config chose a storage.

    Return whether the checkpoints are now written that way: each a new file renamed into place, never
    rewritten, so the finished one may be published as a hard link rather than a copy.
    """
    hook = cfg.get("default_hooks", {}).get("checkpoint")
    if hook is not None and hook.get("backend_args") is None and hook.get("file_client_args") is None:
        hook["backend_args"] = dict(backend=ATOMIC_BACKEND)
    return hook is not None and (hook.get("backend_args") or {}).get("backend") == ATOMIC_BACKEND


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


def build_runner(cfg) -> Runner:
    """mmengine's Runner for ``cfg``, with a visualizer of its own.

    mmengine keeps one Visualizer per name in a process and hands the existing one to any later Runner
    that asks for that name; mmdet's configs all name theirs ``visualizer``.  A second run in the same
    process (training after training, in a script or a test session) would then write its config and
    its logged scalars into the first run's ``vis_data``, and fail once that folder is gone.  Called after
    :func:`run_fingerprint`: the name is not part of the run's identity.
    """
    if cfg.get("visualizer") is not None:
        cfg.visualizer.name = f"visualizer-{uuid.uuid4().hex}"
    return Runner.from_cfg(cfg)
