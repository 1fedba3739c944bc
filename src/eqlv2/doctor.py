"""What ``eqlv2 doctor`` checks: that this install can run on the GPUs the job sees, without ever being
the thing that stops the job.

The failure it exists for: mmcv built on a node without a GPU (or without ``FORCE_CUDA=1``) has
CPU-only operators, and built for one card only it lacks the machine code of another; either way a
GPU job dies at its first ``nms``/``RoIAlign`` call ("nms_impl: implementation for device cuda:0 not
found", "no kernel image is available"), after the queue wait and the data loading.

The failure it must never cause: on an H200 under gVisor the doctor itself died of SIGSEGV while the
training it guarded was fine.  So the doctor's own process calls no native code: versions come from
the packages' metadata, and every question to CUDA, cuDNN, NCCL or mmcv's library is a probe
(:mod:`eqlv2.probes`) answered by a child process with faulthandler on and a time limit
(:class:`ProbeRunner`).  A probe that crashes or hangs is a warning naming it; the job is refused only
on positive evidence that it cannot run (:func:`diagnose`, a pure function, tested with constructed
facts for cards this machine does not have).
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from importlib import metadata
from typing import Any

from eqlv2.cuda_arch import runs_on

REBUILD_HINT = "rebuild mmcv with FORCE_CUDA=1 and TORCH_CUDA_ARCH_LIST naming this card (see the README)"
PROBE_TIMEOUT = 60.0  # seconds; the first CUDA context on a large card takes a few
_CHILD = ["-X", "faulthandler", "-c", "from eqlv2.probes import serve; serve()"]
_STOP_GRACE = 5.0  # seconds between SIGABRT (faulthandler prints the hung stack) and SIGKILL


class InstallProblem(ValueError):
    """The install cannot run the job; the CLI reports it as one line and exits non-zero."""


@dataclasses.dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]

    def describe(self) -> str:
        return f"GPU {self.index} ({self.name}, compute capability {self.capability[0]}.{self.capability[1]})"


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """How one probe went: ``ok``, ``failed`` (it raised), ``crashed`` (its process died), ``timeout``
    or ``skipped``; ``value`` is its answer when ``ok``."""

    name: str
    status: str
    seconds: float = 0.0
    value: Any = None
    error: str | None = None
    signal: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def why_not(self) -> str:
        """What happened to a probe that gave no answer, in a few words."""
        if self.status == "crashed":
            return (
                f"its process died of {self.signal}" if self.signal else f"its process exited ({self.error})"
            )
        if self.status == "timeout":
            return f"it gave no answer in {self.seconds:.0f} s and was stopped"
        return self.error or self.status


@dataclasses.dataclass(frozen=True)
class Facts:
    """What is installed and what is visible.  ``None`` means "not there" (a CPU build has no CUDA) or,
    where the probe behind it gave no answer, "unknown": :func:`diagnose` reads the probes to tell."""

    torch: str | None
    torch_file: str | None
    cuda: str | None  # torch.version.cuda
    cudnn: str | None
    nccl: str | None
    torch_archs: list[str] | None  # what torch's own kernels were built for
    mmcv: str | None
    mmdet: str | None
    mmengine: str | None
    mmcv_ext: str | None  # the compiled operators' library
    mmcv_cuda: str | None  # the CUDA version mmcv's operators were compiled with; None: CPU-only
    mmcv_archs: list[str] | None  # read from the library's .nv_fatbin
    gpus: list[Gpu] | None


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    problems: list[str]  # the job cannot run: each one sentence
    warnings: list[str]  # what could not be checked, and why


class ProbeRunner:
    """Runs probes in a child interpreter, one request at a time, each with a time limit.

    One child answers probe after probe (torch is imported once); after a crash or a hang the next probe
    gets a fresh child.  ``isolate`` gives every probe a process of its own, to tell whether a crash
    depends on what ran before it.  The child's stderr (a faulthandler stack above all) is relayed to
    this process's stderr when its probe crashed or hung, so the job's log shows where.
    """

    def __init__(self, timeout: float = PROBE_TIMEOUT, isolate: bool = False) -> None:
        self.timeout = timeout
        self.isolate = isolate
        self._child: subprocess.Popen | None = None
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._readers: list[threading.Thread] = []

    def run(self, name: str, **args: Any) -> ProbeResult:
        if self._child is None:
            self._start()
        start = time.monotonic()
        try:
            self._child.stdin.write(json.dumps({"probe": name, "args": args}) + "\n")
            self._child.stdin.flush()
        except BrokenPipeError:
            pass  # it died before reading: reported below as a crash
        try:
            line = self._answers.get(timeout=self.timeout)
        except queue.Empty:
            self._stop()
            return self._lost(name, "timeout", time.monotonic() - start)
        seconds = time.monotonic() - start
        if line is None:
            return self._lost(name, "crashed", seconds)
        answer = json.loads(line)
        if self.isolate:
            self.close()
        if answer["error"] is not None:
            return ProbeResult(name, "failed", seconds, error=answer["error"].splitlines()[0][:300])
        return ProbeResult(name, "ok", seconds, value=answer["value"])

    @staticmethod
    def skip(name: str, why: str) -> ProbeResult:
        return ProbeResult(name, "skipped", error=why)

    def close(self) -> None:
        """End the child: its loop ends with its stdin; one that hangs on the way out is killed."""
        if self._child is not None:
            self._child.stdin.close()
            try:
                self._child.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
            self._child = None

    def _start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._child = subprocess.Popen(
            [sys.executable, *_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        self._answers = queue.Queue()
        self._stderr = []
        answers, stderr = self._answers, self._stderr

        def read_answers(stream) -> None:
            for line in stream:
                answers.put(line)
            answers.put(None)  # end of file: the child is gone

        self._readers = [
            threading.Thread(target=read_answers, args=(self._child.stdout,), daemon=True),
            threading.Thread(target=stderr.extend, args=(self._child.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _stop(self) -> None:
        """Stop a hung child: SIGABRT first, so that faulthandler prints where it hung."""
        self._child.send_signal(signal.SIGABRT)
        try:
            self._child.wait(_STOP_GRACE)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()

    def _lost(self, name: str, status: str, seconds: float) -> ProbeResult:
        """The child gave no answer: name how it ended, relay what it printed, start afresh next time."""
        child, self._child = self._child, None
        returncode = child.wait()
        for reader in self._readers:  # the child's last lines
            reader.join(_STOP_GRACE)
        if self._stderr:
            print(f"eqlv2 doctor: probe {name}: what its process printed:", file=sys.stderr)
            sys.stderr.write("".join(self._stderr))
            sys.stderr.flush()
        died_of = signal.Signals(-returncode).name if returncode < 0 and status == "crashed" else None
        return ProbeResult(name, status, seconds, error=f"exit status {returncode}", signal=died_of)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def gather_facts(runner: ProbeRunner) -> tuple[Facts, dict[str, ProbeResult]]:
    """Ask every probe, in an order where each sees what the earlier ones found.  Returns the facts and
    how each probe went (in the order asked)."""
    probes: dict[str, ProbeResult] = {}

    def ask(name: str, **args: Any) -> Any:
        probes[name] = runner.run(name, **args)
        return probes[name].value if probes[name].ok else None

    try:
        torch = ask("torch") or {}
        ops = ask("mmcv_ops") or {}
        if ops.get("ext"):
            archs = ask("mmcv_archs", path=ops["ext"])
        else:
            archs = None
            probes["mmcv_archs"] = runner.skip("mmcv_archs", "no library of mmcv's operators to read")
        cudnn, nccl = ask("cudnn"), ask("nccl")
        visible = ask("gpus")
        gpus = (
            None
            if visible is None
            else [Gpu(g["index"], g["name"], tuple(g["capability"])) for g in visible["gpus"]]
        )
        if gpus and ops.get("cuda"):
            kinds = {(gpu.name, gpu.capability): gpu.index for gpu in gpus}  # one card of each kind
            ask("functional", devices=sorted(kinds.values()))
        else:
            why = "no GPU visible" if not gpus else "mmcv's operators have no CUDA"
            probes["functional"] = runner.skip("functional", why)
    finally:
        runner.close()
    facts = Facts(
        torch=torch.get("version", _version("torch")),
        torch_file=torch.get("file"),
        cuda=torch.get("cuda"),
        cudnn=cudnn,
        nccl=nccl,
        torch_archs=None if visible is None else visible["torch_archs"],
        mmcv=_version("mmcv"),
        mmdet=_version("mmdet"),
        mmengine=_version("mmengine"),
        mmcv_ext=ops.get("ext"),
        mmcv_cuda=ops.get("cuda"),
        mmcv_archs=archs,
        gpus=gpus,
    )
    return facts, probes


def diagnose(
    facts: Facts, require_gpu: bool = False, probes: dict[str, ProbeResult] | None = None
) -> Diagnosis:
    """Every reason the install cannot run on the visible GPUs (``problems``), and every check that
    could not be made (``warnings``).  ``probes`` (default: all answered) says which facts are known.

    Problems need positive evidence: mmcv's operators do not import, were compiled with another CUDA
    major than torch's or without CUDA while a GPU is visible, a GPU job sees no GPU, no compiled
    architecture runs on a visible card (unless the functional probe ran on it), or the functional probe
    failed.  With no GPU visible there is nothing more to check (CPU runs need only CPU operators).
    """
    probes = probes or {}

    def answered(name: str) -> bool:
        return name not in probes or probes[name].ok

    problems: list[str] = []
    warnings = [
        f"probe {result.name} gave no answer ({result.why_not()}); the doctor went on without it"
        for result in probes.values()
        if result.status in ("crashed", "timeout")
        or (result.status == "failed" and result.name not in ("mmcv_ops", "functional"))
    ]  # a failed mmcv_ops or functional probe is evidence, judged below
    if not answered("mmcv_ops") and probes["mmcv_ops"].status == "failed":
        problems.append(f"mmcv's operators cannot be imported ({probes['mmcv_ops'].error})")
    if facts.mmcv_cuda and facts.cuda and facts.mmcv_cuda.split(".")[0] != facts.cuda.split(".")[0]:
        problems.append(
            f"mmcv's operators were compiled with CUDA {facts.mmcv_cuda} but torch {facts.torch} uses "
            f"CUDA {facts.cuda}: rebuild mmcv against this torch"
        )
    if facts.gpus is None:  # the probe gave no answer: nothing is known about the cards
        return Diagnosis(problems, warnings)
    if not facts.gpus:
        if require_gpu:
            cpu_build = answered("torch") and facts.cuda is None
            why = "it is a CPU build" if cpu_build else "check the job's GPU request and the driver"
            problems.append(f"no GPU is visible to torch {facts.torch} ({why})")
        return Diagnosis(problems, warnings)
    if not answered("mmcv_ops"):
        return Diagnosis(problems, warnings)
    if facts.mmcv_cuda is None:
        problems.append(
            f"{facts.gpus[0].describe()} is visible but mmcv's operators were compiled without CUDA "
            f"({facts.mmcv_ext or 'no mmcv._ext'}): {REBUILD_HINT}"
        )
        return Diagnosis(problems, warnings)
    functional = probes.get("functional")
    if functional is not None and functional.status == "failed":
        problems.append(f"mmcv's nms and RoIAlign do not run on the GPU ({functional.error}): {REBUILD_HINT}")
    if facts.mmcv_archs is None:
        return Diagnosis(problems, warnings)
    built = " ".join(facts.mmcv_archs) or "no architecture"
    for gpu in {(g.name, g.capability): g for g in facts.gpus}.values():  # one line per kind of card
        if any(runs_on(arch, gpu.capability) for arch in facts.mmcv_archs):
            continue
        verdict = f"mmcv's CUDA operators are built for {built}, none of which runs on {gpu.describe()}"
        if functional is not None and functional.ok:
            warnings.append(
                f"{verdict} by the library's headers, yet nms and RoIAlign ran there: trusting the run"
            )
        else:
            problems.append(f"{verdict}: {REBUILD_HINT}")
    return Diagnosis(problems, warnings)


def render_text(facts: Facts, diagnosis: Diagnosis, probes: dict[str, ProbeResult]) -> str:
    """The report, one fact per line, then the warnings; the problems are reported by the caller."""

    def shown(value: Any, probe: str, absent: str = "not available") -> str:
        if probe in probes and not probes[probe].ok:
            return f"unknown (probe {probe}: {probes[probe].why_not()})"
        if value is None:
            return absent
        return (" ".join(value) or "none") if isinstance(value, list) else str(value)

    if facts.mmcv_cuda is not None:
        ops = f"compiled with CUDA {facts.mmcv_cuda} ({facts.mmcv_ext})"
    elif facts.mmcv_ext is not None:
        ops = f"CPU-only, compiled without CUDA ({facts.mmcv_ext})"
    else:
        ops = "missing (mmcv has no compiled operators, mmcv._ext)"
    lines = [
        f"torch: {facts.torch}" + (f" ({facts.torch_file})" if facts.torch_file else ""),
        f"CUDA (torch.version.cuda): {shown(facts.cuda, 'torch', 'none, torch is a CPU build')}",
        f"cuDNN: {shown(facts.cudnn, 'cudnn')}",
        f"NCCL: {shown(facts.nccl, 'nccl')}",
        f"torch CUDA architectures: {shown(facts.torch_archs, 'gpus')}",
        f"mmcv: {facts.mmcv}",
        f"mmdet: {facts.mmdet}",
        f"mmengine: {facts.mmengine}",
        f"mmcv operators: {shown(ops, 'mmcv_ops')}",
        f"mmcv CUDA architectures: {shown(facts.mmcv_archs, 'mmcv_archs', 'none')}",
    ]
    if facts.gpus:
        lines += [gpu.describe() for gpu in facts.gpus]
    else:
        lines.append(f"GPUs: {shown(facts.gpus or None, 'gpus', 'none visible to torch')}")
    functional = probes.get("functional")
    if functional is not None and functional.status != "skipped":
        lines.append(
            f"nms and RoIAlign on the GPU: {'agree with the CPU' if functional.ok else functional.why_not()}"
        )
    lines += [f"warning: {warning}" for warning in diagnosis.warnings]
    verdict = f"{len(diagnosis.problems)} problem(s)" if diagnosis.problems else "ok"
    lines.append(
        f"doctor: {verdict}" + (f", {len(diagnosis.warnings)} warning(s)" if diagnosis.warnings else "")
    )
    return "\n".join(lines)


def render_json(facts: Facts, diagnosis: Diagnosis, probes: dict[str, ProbeResult], isolated: bool) -> str:
    report = dataclasses.asdict(facts)
    if facts.gpus is not None:
        report["gpus"] = [
            {**dataclasses.asdict(gpu), "capability": "{}.{}".format(*gpu.capability)} for gpu in facts.gpus
        ]
    report["probes"] = {
        name: {"status": r.status, "seconds": round(r.seconds, 3), "signal": r.signal, "error": r.error}
        for name, r in probes.items()
    }
    report["isolated"] = isolated
    report["problems"] = diagnosis.problems
    report["warnings"] = diagnosis.warnings
    report["ok"] = not diagnosis.problems
    return json.dumps(report, indent=2)
