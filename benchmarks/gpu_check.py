"""The Python half of ``benchmarks/gpu_check.sh``: the checks and timings, and the JSON report they fill.

The shell script sets up a machine with one GPU and no network (venv, carried wheels, mmcv's CUDA build)
and calls one subcommand per step.  Every subcommand merges its figures into one report file
(``gpu_check.json``) whose layout is fixed up front (:func:`layout`, every figure ``null`` until it is
measured), so a run cut short still leaves a well-formed report of what it got to, and ``--dry-run`` can
show the layout without a GPU.

Only the standard library is imported at module level: ``layout`` and ``record`` run on any Python, and
``preflight`` before anything is installed (it needs only torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import mmap
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

SELF = Path(__file__).resolve()  # the children of some steps run a subcommand of this file
HERE = SELF.parent
BUNDLE_LIST = HERE / "gpu_bundle.txt"
MMCV_SDIST = "mmcv-2.1.0.tar.gz"
# In the order they run: the first four are fatal (everything later needs the venv and mmcv's build);
# after them the quick checks, then the workflow (the proof that matters most), then the old reader's
# suspect and the timings: what a call cut short by its budget loses is what matters least.
STEPS = ("preflight", "venv", "install", "build_mmcv", "provenance", "doctor", "ops", "eqlv2_loss", "nccl",
         "workflow", "mmap_reader", "lvis_timing")  # fmt: skip
# What the GPU image is expected to have already (Python 3.12 with a CUDA torch and the scientific stack):
# import names checked by `preflight`, so a machine lacking one fails at once, naming it.
PREINSTALLED = {
    "torch": "torch", "numpy": "numpy", "scipy": "scipy", "pandas": "pandas", "matplotlib": "matplotlib",
    "cv2": "opencv-python-headless", "PIL": "pillow", "yaml": "pyyaml", "tabulate": "tabulate", "six": "six",
    "tqdm": "tqdm", "rich": "rich", "packaging": "packaging", "pyparsing": "pyparsing",
    "dateutil": "python-dateutil", "cycler": "cycler", "kiwisolver": "kiwisolver", "attrs": "attrs",
    "typing_extensions": "typing-extensions", "markdown_it": "markdown-it-py", "pygments": "pygments",
    "numba": "numba", "llvmlite": "llvmlite",  # the evaluator's kernels; llvmlite's wheel alone is 60 MB
}  # fmt: skip
LVIS_CE = "lvis_v1/mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py"
LVIS_EQLV2 = "lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss_ms-1x_lvis-v1.py"
LVIS_MMDET = "mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py"
# The timed runs: (config, mode).  "amp" trains as `eqlv2 train --amp` does (AmpOptimWrapper, float16),
# "deterministic" as train.deterministic: true does (CUBLAS_WORKSPACE_CONFIG, deterministic kernels with
# warn_only), recording the operators torch warns about.  Each runs in a process of its own.
LVIS_RUNS = {
    "ce": (LVIS_CE, "plain"),
    "eqlv2": (LVIS_EQLV2, "plain"),
    "mmdet_lvis": (LVIS_MMDET, "plain"),
    "eqlv2_amp": (LVIS_EQLV2, "amp"),
    "eqlv2_deterministic": (LVIS_EQLV2, "deterministic"),
}
LVIS_RUN_TIMEOUT = 150  # seconds for one run's process: building the model and 25 iterations
# The workflow step: CI's small setting (.test/config_small), the LVIS branch's baseline, EQLv2 and one
# decoupled method (cRT, after checkpoint surgery), training and inference on the GPU; evaluation and
# the table on the CPU, as on a cluster.  Three GPU jobs may share the one card (the toy needs ~200 MiB).
WORKFLOW_METHODS = ("baseline", "eqlv2", "crt")
WORKFLOW_GPU_SLOTS = 3
WORKFLOW_TABLE = "results/toy/paper_table.md"
# The old reader of mmcv's library (a shared read-only mapping, as eqlv2 doctor had it when it died of
# SIGSEGV on an H200 under gVisor), run in a fresh process at each stage the doctor's process had reached.
MMAP_STAGES = {
    "file_only": "nothing imported: the file as pip wrote it",
    "ext_loaded": "torch and mmcv._ext imported (the library loaded), CUDA not started",
    "after_nccl_query": "as ext_loaded, then torch.cuda.nccl.version() before CUDA starts",
    "cuda_started": "as ext_loaded, then CUDA started and a tensor put on the GPU",
}
LVIS_IMAGE_SIZE = (1333, 800)  # width, height: the paper's test scale and the largest training scale
LVIS_CLASSES = 1203
LVIS_WARMUP_ITERS = 5
LVIS_TIMED_ITERS = 20
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # float32 CUDA vs CPU: summation order differs, nothing else
DEVICE = "cuda"  # what every check compares with the CPU


def _process_result() -> dict:
    """How a child process ended: exit status, the signal that killed it, its time, its last words."""
    return dict.fromkeys(("exit_status", "signal", "timed_out", "seconds", "stderr_tail"))


def layout() -> dict:
    """The report with every figure unmeasured (``null``); each step fills its own section."""
    torch_facts = dict.fromkeys(("python", "torch_path", "torch_version", "torch_cuda", "torch_git"))
    doctor_run = {**_process_result(), "ok": None, "problems": None, "warnings": None, "probes": None}
    lvis_run = {"config": None, "mode": None, "seconds_per_iter_median": None, "seconds_per_iter_mean": None,
                "max_memory_mib": None, "last_loss": None, "finite": None, "warned_ops": None,
                "exit_status": None, "error": None}  # fmt: skip
    return {
        "format": "eqlv2-gpu-check/2",
        "machine": dict.fromkeys(("gpu", "compute_capability", "gpu_memory_mib", "driver", "cpus", "python",
                                  "torch", "torch_cuda", "nvcc")),  # fmt: skip
        "steps": {step: {"status": None, "seconds": None, "error": None} for step in STEPS},
        "build_mmcv": {"torch_cuda_arch_list": None, "max_jobs": None},
        "provenance": {"base": dict(torch_facts), "venv": dict(torch_facts),
                       "mmcv_built_against": dict(torch_facts), "same_torch": None, "mmcv_cuda": None,
                       "mmcv_compiler": None, "mmcv_ext": None},  # fmt: skip
        "doctor": {"whole": dict(doctor_run), "isolated": dict(doctor_run)},
        "mmap_reader": {"pread_archs": None, "pread_error": None, "verdict": None,
                        **{stage: {**_process_result(), "archs": None}
                           for stage in MMAP_STAGES}},  # fmt: skip
        "ops": {
            "roi_align": {"rois": None, "output_size": None, "forward_max_abs_diff": None,
                          "backward_max_abs_diff": None, "ok": None},  # fmt: skip
            "nms": {"boxes": None, "iou_threshold": None, "kept_cpu": None, "kept_cuda": None,
                    "same_kept": None, "ok": None},  # fmt: skip
            "batched_nms": {"boxes": None, "classes": None, "iou_threshold": None, "kept_cpu": None,
                            "kept_cuda": None, "same_kept": None, "ok": None},  # fmt: skip
        },
        "eqlv2_loss": dict.fromkeys(("num_classes", "rois", "iterations", "loss_max_abs_diff",
                                     "grad_max_abs_diff", "pos_grad_max_abs_diff", "neg_grad_max_abs_diff",
                                     "pos_neg_max_rel_diff", "ok")),  # fmt: skip
        "nccl": {**_process_result(), "nccl_version": None, "world_size": None, "all_reduce": None,
                 "ok": None},  # fmt: skip
        "workflow": {**_process_result(), "methods": None, "gpu_slots": None, "jobs": None, "outputs": None,
                     "doctor_runs": None, "table": None},  # fmt: skip
        "lvis_timing": {"image_size": None, "images_per_iter": None, "classes": None, "warmup_iters": None,
                        "timed_iters": None, **{name: dict(lvis_run) for name in LVIS_RUNS}},  # fmt: skip
    }


def _merge(into: dict, update: dict, path: str = "") -> None:
    """Copy ``update`` into the report; a key outside the layout is a bug in this script, not data."""
    for key, value in update.items():
        if key not in into:
            raise KeyError(f"report has no field {path}{key}")
        if isinstance(into[key], dict) and isinstance(value, dict):
            _merge(into[key], value, f"{path}{key}.")
        else:
            into[key] = value


def update_report(report: Path, section: str, figures: dict) -> None:
    """Merge ``figures`` into ``section`` of ``report`` (created from :func:`layout`), atomically."""
    data = json.loads(report.read_text()) if report.is_file() else layout()
    _merge(data, {section: figures})
    report.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=report.parent, prefix=f".{report.name}.", delete=False) as tmp:
        json.dump(data, tmp, indent=2)
    os.replace(tmp.name, report)


def bundle_requirements(path: Path = BUNDLE_LIST) -> list[tuple[str, str]]:
    """``(name, version)`` of every wheel the bundle carries, from ``gpu_bundle.txt`` (``name==version``)."""
    pins = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)", text)
        if match is None:
            raise ValueError(f"{path}:{number}: expected name==version, got {text!r}")
        pins.append((match.group(1), match.group(2)))
    return pins


def _wheel_prefix(name: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def missing_from_bundle(bundle: Path) -> list[str]:
    """What ``gpu_check.sh`` needs from the bundle and does not find there (file names or pins)."""
    wheels = [p.name.lower() for p in (bundle / "wheels").glob("*.whl")]
    missing = [f"{name}=={version}" for name, version in bundle_requirements()
               if not any(w.startswith(_wheel_prefix(name, version)) for w in wheels)]  # fmt: skip
    if not (bundle / "sdist" / MMCV_SDIST).is_file():
        missing.insert(0, f"sdist/{MMCV_SDIST}")
    return missing


def _fail(message: str) -> None:
    print(f"gpu_check: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def _require_cuda():
    import torch

    if not torch.cuda.is_available():
        _fail(f"no CUDA GPU is visible to torch {torch.__version__}")
    return torch


def _require(device: str):
    """torch, once ``device`` is known to be there (the checks also run CPU against CPU, in the tests)."""
    if device.startswith("cuda"):
        return _require_cuda()
    import torch

    return torch


def preflight(report: Path, bundle: Path, arch_file: Path) -> None:
    """Fail in seconds, with one line, on what would otherwise fail minutes into the build."""
    if not bundle.is_dir():
        _fail(f"no bundle at {bundle}: run benchmarks/gpu_bundle.sh where there is a network, and carry it")
    missing = missing_from_bundle(bundle)
    if missing:
        _fail(f"{bundle} lacks {', '.join(missing)}: run benchmarks/gpu_bundle.sh where there is a network")
    absent = []
    for module, dist in PREINSTALLED.items():
        try:
            __import__(module)
        except ImportError:
            absent.append(dist)
    if absent:
        _fail(f"{sys.executable} lacks {', '.join(absent)}, which the GPU image is expected to provide")
    torch = _require_cuda()
    nvcc = shutil.which("nvcc") or (Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc")
    try:
        nvcc_text = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        _fail(f"no working nvcc (looked on PATH and at {nvcc}): mmcv's CUDA operators cannot be built")
    nvcc_release = re.search(r"release (\d+\.\d+)", nvcc_text).group(1)
    if nvcc_release.split(".")[0] != torch.version.cuda.split(".")[0]:
        _fail(f"nvcc is CUDA {nvcc_release} but torch {torch.__version__} is built for CUDA "
              f"{torch.version.cuda}: torch builds no extension across CUDA major versions")  # fmt: skip
    properties = torch.cuda.get_device_properties(0)
    capability = f"{properties.major}.{properties.minor}"
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, check=True).stdout.split()[0]  # fmt: skip
    except (OSError, subprocess.CalledProcessError, IndexError):
        driver = None
    arch_file.parent.mkdir(parents=True, exist_ok=True)
    arch_file.write_text(capability + "\n")  # TORCH_CUDA_ARCH_LIST: this card only
    update_report(report, "machine", {
        "gpu": properties.name, "compute_capability": capability,
        "gpu_memory_mib": properties.total_memory // 2**20, "driver": driver, "cpus": os.cpu_count(),
        "python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "nvcc": nvcc_release,
    })  # fmt: skip


def record_build(report: Path, arch_list: str, max_jobs: int) -> None:
    update_report(report, "build_mmcv", {"torch_cuda_arch_list": arch_list, "max_jobs": max_jobs})


# What an interpreter's torch is, asked in a process of its own (an interpreter that crashes on
# `import torch` is a finding, not the end of the check).
_TORCH_FACTS = """
import json, sys, torch
print(json.dumps({"python": sys.executable, "torch_path": torch.__file__, "torch_version": torch.__version__,
                  "torch_cuda": torch.version.cuda, "torch_git": torch.version.git_version}))
"""


def _signal_name(status: int) -> str | None:
    """The signal behind an exit status: negative from subprocess, 128 + n from a shell."""
    number = -status if status < 0 else status - 128 if status > 128 else None
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run_child(command: list[str], timeout: float, env: dict | None = None) -> tuple[dict, str]:
    """Run ``command`` to its end or its time limit; how it ended (:func:`_process_result`) and its stdout."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        status, stdout, stderr, timed_out = done.returncode, done.stdout, done.stderr, False
    except subprocess.TimeoutExpired as err:
        status, timed_out = None, True
        stdout = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout or ""
        stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else err.stderr or ""
    result = {
        "exit_status": status, "signal": None if status is None else _signal_name(status),
        "timed_out": timed_out, "seconds": round(time.perf_counter() - start, 2),
        "stderr_tail": "\n".join(stderr.strip().splitlines()[-15:]) or None,
    }  # fmt: skip
    return result, stdout


def how_it_ended(result: dict) -> str:
    """A child's end in a few words: the signal, the time limit, or the exit status."""
    if result["signal"]:
        return result["signal"]
    return "timed out" if result["timed_out"] else f"exit status {result['exit_status']}"


def _torch_facts(python: str) -> dict:
    result, stdout = run_child([python, "-X", "faulthandler", "-c", _TORCH_FACTS], timeout=120)
    if result["exit_status"] != 0:
        _fail(f"{python} cannot import torch ({how_it_ended(result)}): "
              f"{result['stderr_tail']}")  # fmt: skip
    return json.loads(stdout.strip().splitlines()[-1])


def record_built_against(work: Path) -> None:
    """Before mmcv is compiled: which torch the build is about to compile against (the venv's)."""
    (work / "mmcv_built_against.json").write_text(json.dumps(_torch_facts(sys.executable)))


_MMCV_FACTS = """
import importlib.util, json
from mmcv.ops import get_compiler_version, get_compiling_cuda_version
print(json.dumps({"mmcv_ext": importlib.util.find_spec("mmcv._ext").origin,
                  "mmcv_cuda": get_compiling_cuda_version(), "mmcv_compiler": get_compiler_version()}))
"""


def provenance(report: Path, base_python: str, work: Path) -> None:
    """Which torch ran, for the machine's interpreter and the venv's, and which one mmcv was built against:
    an mmcv compiled against another torch than the one that imports it fails in native code."""
    base, venv = _torch_facts(base_python), _torch_facts(sys.executable)
    built = work / "mmcv_built_against.json"
    against = json.loads(built.read_text()) if built.is_file() else dict.fromkeys(base)
    result, stdout = run_child([sys.executable, "-X", "faulthandler", "-c", _MMCV_FACTS], timeout=120)
    if result["exit_status"] != 0:
        _fail(f"mmcv's operators do not import ({how_it_ended(result)}): "
              f"{result['stderr_tail']}")  # fmt: skip
    same = None  # not known when this check did not build mmcv
    if against["torch_path"] is not None:
        key = ("torch_path", "torch_version")
        same = [venv[k] for k in key] == [against[k] for k in key]
    update_report(report, "provenance", {
        "base": base, "venv": venv, "mmcv_built_against": against, "same_torch": same,
        **json.loads(stdout.strip().splitlines()[-1]),
    })  # fmt: skip
    if same is False:
        _fail(f"mmcv was built against torch {against['torch_version']} at {against['torch_path']}, "
              f"but the venv imports torch {venv['torch_version']} at {venv['torch_path']}")  # fmt: skip


def doctor(report: Path, timeout: float) -> None:
    """``eqlv2 doctor --require-gpu`` as every GPU job runs it, then with every probe in a process of its
    own (--isolate); each in a child of this process, so that a crash of the doctor itself is recorded
    with its signal.  The step fails when the doctor, run as the jobs run it, does not pass."""
    runs = {}
    for name, extra in (("whole", []), ("isolated", ["--isolate"])):
        command = [sys.executable, "-X", "faulthandler", "-m", "eqlv2", "doctor", "--require-gpu", "--json",
                   *extra]  # fmt: skip
        result, stdout = run_child(command, timeout)
        try:
            verdict = json.loads(stdout)
            result.update(ok=verdict["ok"], problems=verdict["problems"], warnings=verdict["warnings"],
                          probes=verdict["probes"])  # fmt: skip
        except (json.JSONDecodeError, KeyError, TypeError):
            result["ok"] = False
        runs[name] = result
        update_report(report, "doctor", {name: result})
    whole = runs["whole"]
    if not whole["ok"] or whole["exit_status"] != 0:
        how = how_it_ended(whole)
        _fail(f"eqlv2 doctor --require-gpu did not pass ({how}): {whole['problems'] or whole['stderr_tail']}")


def mapped_fatbin_architectures(path: str) -> list[str]:
    """The architectures of ``path``'s fat binary read through a shared read-only mapping of the whole
    file: the reader ``eqlv2 doctor`` had when it crashed, kept here only to test that suspect."""
    from eqlv2.cuda_arch import FATBIN_SECTION, _section, parse_fatbin

    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:

        def read(offset: int, count: int, what: str) -> bytes:
            if offset + count > len(data):
                raise ValueError(f"{path}: {what} lies outside the file")
            return data[offset : offset + count]

        section = _section(Path(path), read, FATBIN_SECTION)
    return sorted(set(parse_fatbin(section))) if section is not None else []


def mmap_probe(stage: str, path: str) -> None:
    """One stage of the mapped reader (:data:`MMAP_STAGES`), in this fresh process; prints the archs."""
    if stage != "file_only":
        import mmcv._ext  # noqa: F401  (loads the library, as the doctor's process had)
        import torch

        if stage == "after_nccl_query":
            torch.cuda.nccl.version()
        elif stage == "cuda_started":
            torch.cuda.init()
            torch.ones(1, device="cuda").sum().item()
    print(json.dumps(mapped_fatbin_architectures(path)))


def mmap_reader(report: Path) -> None:
    """The first suspect of the doctor's SIGSEGV, confirmed or cleared: the mapped reader at each stage in
    a process of its own, beside today's pread reader (:func:`eqlv2.cuda_arch.fatbin_architectures`)."""
    from eqlv2.cuda_arch import fatbin_architectures

    result, stdout = run_child([sys.executable, "-c", _MMCV_FACTS], timeout=120)
    if result["exit_status"] != 0:
        _fail(f"mmcv's operators do not import: {result['stderr_tail']}")
    ext = json.loads(stdout.strip().splitlines()[-1])["mmcv_ext"]
    figures: dict = {}
    try:
        figures["pread_archs"] = fatbin_architectures(ext)
    except ValueError as err:
        figures["pread_error"] = str(err)
    crashed, failed = [], []
    for stage in MMAP_STAGES:
        command = [sys.executable, "-X", "faulthandler", str(SELF), "mmap-probe", stage, ext]
        result, stdout = run_child(command, timeout=120)
        archs = json.loads(stdout.strip().splitlines()[-1]) if result["exit_status"] == 0 else None
        figures[stage] = {**result, "archs": archs}
        if result["signal"]:
            crashed.append(f"{stage} ({result['signal']})")
        elif result["exit_status"] != 0:
            failed.append(f"{stage} ({how_it_ended(result)})")
        update_report(report, "mmap_reader", figures)
    if crashed:
        verdict = f"confirmed: the mapped reader crashes at {', '.join(crashed)}"
    elif failed:
        verdict = f"inconclusive: no crash, but these stages could not run: {', '.join(failed)}"
    else:
        verdict = "cleared: the mapped reader ran at every stage"
    update_report(report, "mmap_reader", {"verdict": verdict})


def _max_abs_diff(a, b) -> float:
    return float((a.detach().cpu().double() - b.detach().cpu().double()).abs().max()) if a.numel() else 0.0


def _close(a, b) -> bool:
    import torch

    return bool(torch.allclose(a.detach().cpu(), b.detach().cpu(), **TOLERANCE))


def _random_boxes(torch, generator, count: int, width: float, height: float):
    x1 = torch.rand(count, generator=generator) * width * 0.8
    y1 = torch.rand(count, generator=generator) * height * 0.8
    w = 8 + torch.rand(count, generator=generator) * width * 0.3
    h = 8 + torch.rand(count, generator=generator) * height * 0.3
    return torch.stack([x1, y1, (x1 + w).clamp(max=width), (y1 + h).clamp(max=height)], dim=1)


def check_ops(report: Path, device: str = DEVICE) -> None:
    """RoIAlign forward and backward, nms and batched_nms on ``device`` against mmcv's CPU kernels."""
    torch = _require(device)
    from mmcv.ops import RoIAlign, batched_nms, nms

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 64, 100, 168, generator=generator)  # stride 8 of a 1333x800 image
    boxes = _random_boxes(torch, generator, 512, 1333, 800)
    rois = torch.cat([torch.randint(0, 2, (512, 1), generator=generator).float(), boxes], dim=1)
    upstream = torch.randn(512, 64, 7, 7, generator=generator)
    results = []  # [the CPU's (output, input gradient), the device's]
    for where in ("cpu", device):
        roi_align = RoIAlign((7, 7), spatial_scale=1 / 8, sampling_ratio=0, aligned=True)
        inputs = features.detach().to(where).requires_grad_()  # a leaf on each device, with its own .grad
        out = roi_align(inputs, rois.to(where))
        (out * upstream.to(where)).sum().backward()
        results.append((out, inputs.grad))
    (cpu_out, cpu_grad), (out, grad) = results
    forward_diff, backward_diff = _max_abs_diff(out, cpu_out), _max_abs_diff(grad, cpu_grad)
    ok = _close(out, cpu_out) and _close(grad, cpu_grad)
    figures = {"roi_align": {"rois": 512, "output_size": 7, "forward_max_abs_diff": forward_diff,
                             "backward_max_abs_diff": backward_diff, "ok": ok}}  # fmt: skip

    # proposals as an RPN makes them: many jittered boxes around few objects, so that most are suppressed
    objects = _random_boxes(torch, generator, 100, 1333, 800)
    boxes = objects[torch.randint(0, 100, (2000,), generator=generator)]
    boxes = boxes + torch.randn(2000, 4, generator=generator) * 12
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 4)
    scores = torch.rand(2000, generator=generator)
    classes = torch.randint(0, 5, (2000,), generator=generator)
    kept_cpu, kept = (nms(boxes.to(where), scores.to(where), 0.7)[1].cpu() for where in ("cpu", device))
    same = torch.equal(kept_cpu, kept)
    figures["nms"] = {"boxes": 2000, "iou_threshold": 0.7, "kept_cpu": len(kept_cpu),
                      "kept_cuda": len(kept), "same_kept": same, "ok": same}  # fmt: skip
    nms_cfg = {"type": "nms", "iou_threshold": 0.7}
    kept_cpu, kept = (batched_nms(boxes.to(where), scores.to(where), classes.to(where), nms_cfg)[1].cpu()
                      for where in ("cpu", device))  # fmt: skip
    same = torch.equal(kept_cpu, kept)
    figures["batched_nms"] = {"boxes": 2000, "classes": 5, "iou_threshold": 0.7,
                              "kept_cpu": len(kept_cpu), "kept_cuda": len(kept), "same_kept": same,
                              "ok": same}  # fmt: skip
    update_report(report, "ops", figures)
    if not all(section["ok"] for section in figures.values()):
        _fail(f"CUDA and CPU operators disagree: {json.dumps(figures)}")


def check_eqlv2_loss(report: Path, iterations: int = 5, device: str = DEVICE) -> None:
    """EQLv2's loss, its gradient and its accumulated statistics, step by step, on ``device`` and the CPU."""
    torch = _require(device)
    from eqlv2.models.losses.eqlv2 import EQLv2

    generator = torch.Generator().manual_seed(0)
    rois, classes = 1024, LVIS_CLASSES
    losses = [EQLv2(num_classes=classes).to(where) for where in ("cpu", device)]  # [the CPU's, the device's]
    worst = dict.fromkeys(("loss", "grad", "pos_grad", "neg_grad", "pos_neg"), 0.0)
    ok = True
    for _ in range(iterations):
        logits = torch.randn(rois, classes + 1, generator=generator) * 3
        # a quarter foreground (a few classes, as in a long tail), the rest background (label C)
        foreground = torch.rand(rois, generator=generator) < 0.25
        labels = torch.where(foreground, torch.randint(0, 50, (rois,), generator=generator), classes)
        outputs = []
        for where, loss_module in zip(("cpu", device), losses, strict=True):
            z = logits.detach().to(where).requires_grad_()  # a leaf on each device, with its own .grad
            loss = loss_module(z, labels.to(where))
            loss.backward()
            outputs.append((loss, z.grad))
        (cpu_loss, cpu_grad), (loss, grad) = outputs
        pairs = {"loss": (loss, cpu_loss), "grad": (grad, cpu_grad)}
        for name in ("pos_grad", "neg_grad", "pos_neg"):
            pairs[name] = (getattr(losses[1], name), getattr(losses[0], name))
        for name, (on_gpu, on_cpu) in pairs.items():
            ok = ok and _close(on_gpu, on_cpu)
            if name == "pos_neg":  # a ratio: compare relatively
                rel = ((on_gpu.cpu() - on_cpu).abs() / on_cpu.abs().clamp(min=1e-12)).max()
                worst[name] = max(worst[name], float(rel))
            else:
                worst[name] = max(worst[name], _max_abs_diff(on_gpu, on_cpu))
    update_report(report, "eqlv2_loss", {
        "num_classes": classes, "rois": rois, "iterations": iterations, "loss_max_abs_diff": worst["loss"],
        "grad_max_abs_diff": worst["grad"], "pos_grad_max_abs_diff": worst["pos_grad"],
        "neg_grad_max_abs_diff": worst["neg_grad"], "pos_neg_max_rel_diff": worst["pos_neg"], "ok": ok,
    })  # fmt: skip
    if not ok:
        _fail(f"EQLv2 on CUDA and on the CPU disagree beyond {TOLERANCE}")


def nccl_worker() -> None:
    """One process of ``torchrun``: join an NCCL group, all-reduce a tensor, check the sum; print JSON."""
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl")
    world, rank = dist.get_world_size(), dist.get_rank()
    tensor = torch.full((1024,), float(rank + 1), device="cuda")
    dist.all_reduce(tensor)
    expected = world * (world + 1) / 2
    total = float(tensor[0])
    dist.barrier()
    dist.destroy_process_group()
    version = torch.cuda.nccl.version()
    version = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    ok = bool((tensor == expected).all())
    print(json.dumps({"nccl_version": version, "world_size": world, "all_reduce": total, "ok": ok}))


def nccl(report: Path, timeout: float = 120) -> None:
    """``torchrun --standalone --nproc-per-node=1``, as a one-GPU training job starts, over NCCL."""
    command = [sys.executable, "-X", "faulthandler", "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=1", str(SELF), "nccl-worker"]  # fmt: skip
    result, stdout = run_child(command, timeout)
    figures = dict(result)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if result["exit_status"] == 0 and lines:
        figures.update(json.loads(lines[-1]))
    else:
        figures["ok"] = False
    update_report(report, "nccl", figures)
    if not figures["ok"]:
        _fail(f"NCCL under torchrun failed ({how_it_ended(result)}): {result['stderr_tail']}")


def workflow_config(repo: Path, gpus: int) -> dict:
    """CI's small setting, cut to :data:`WORKFLOW_METHODS` on the LVIS branch, training and inference on
    ``gpus`` GPUs a job (0: the CPU, for the tests of this check)."""
    import yaml

    config = yaml.safe_load((repo / ".test" / "config_small" / "config.yaml").read_text())
    config["methods"] = {name: config["methods"][name] for name in WORKFLOW_METHODS}
    config.pop("openimages", None)
    for job in ("train", "predict"):
        config["resources"][job].update(gpus=gpus, processes=1, threads=2 if gpus else 1)
    return config


def workflow_command(repo: Path, workdir: Path, configfile: Path, cores: int, gpu_slots: int) -> list[str]:
    """The snakemake call: the real Snakefile, the local executor, at most ``gpu_slots`` GPU jobs at once."""
    return [str(Path(sys.executable).parent / "snakemake"), "-s", str(repo / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(configfile), "--cores", str(cores),
            "--resources", f"gpu={gpu_slots}", "--printshellcmds", "all"]  # fmt: skip


def parse_summary(text: str) -> list[dict]:
    """``snakemake --summary``'s table (tab-separated, a header line): each output, its rule and status."""
    lines = [line.split("\t") for line in text.splitlines() if "\t" in line]
    if not lines:
        return []
    header = lines[0]
    column = {name: header.index(name) for name in ("output_file", "rule", "status") if name in header}
    if len(column) < 3:
        raise ValueError(f"snakemake --summary has no output_file/rule/status columns: {header}")
    rows = [row for row in lines[1:] if len(row) == len(header)]
    return [{name: row[index] for name, index in column.items()} for row in rows]


def run_workflow(report: Path, repo: Path, work: Path, timeout: float, gpus: int = 1,
                 max_iters: int | None = None) -> None:  # fmt: skip
    """The workflow on this machine, from the generated data to the paper table, as a user runs it; the
    wall time, each output's rule and status (snakemake --summary), how many jobs ran the doctor first."""
    import yaml

    workdir = work / "workflow"
    if workdir.exists():  # a rerun measures a fresh run, not a finished one
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    config = workflow_config(repo, gpus)
    if max_iters is not None:
        config["train"]["max_iters"] = max_iters
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    slots = WORKFLOW_GPU_SLOTS if gpus else 0
    command = workflow_command(repo, workdir, configfile, os.cpu_count() or 1, slots)
    (workdir / "snakemake.out").write_text("")
    result, stdout = run_child(command, timeout)
    (workdir / "snakemake.out").write_text(stdout + (result["stderr_tail"] or ""))
    summary, summary_text = run_child([*command[:-1], "--summary"], timeout=120)
    outputs = parse_summary(summary_text) if summary["exit_status"] == 0 else []
    jobs: dict[str, int] = {}
    for row in outputs:
        jobs[row["rule"]] = jobs.get(row["rule"], 0) + 1
    logs = [path.read_text(errors="replace") for path in (workdir / "logs").rglob("*.log")]
    table = workdir / WORKFLOW_TABLE
    update_report(report, "workflow", {
        **result, "methods": list(WORKFLOW_METHODS), "gpu_slots": slots, "jobs": jobs,
        "outputs": [f"{row['rule']}: {row['output_file']}: {row['status']}" for row in outputs],
        "doctor_runs": sum(log.count("doctor: ok") for log in logs),
        "table": table.read_text() if table.is_file() else None,
    })  # fmt: skip
    if result["exit_status"] != 0 or not table.is_file():
        how = how_it_ended(result)
        _fail(f"the workflow did not reach {WORKFLOW_TABLE} ({how}); see {workdir / 'snakemake.out'}")


def write_lvis_like_data(root: Path, num_classes: int = LVIS_CLASSES, images: int = 2, seed: int = 0) -> Path:
    """A two-image dataset in the LVIS v1 schema with the real class count, images of 1333x800 noise.

    Enough for the real LVIS configs to build their dataset and pipeline; the content is irrelevant to a
    timing (ten boxes with polygon masks per image, random classes).
    """
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    width, height = LVIS_IMAGE_SIZE
    (root / "train2017").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    doc_images, annotations = [], []
    for image_id in range(1, images + 1):
        url = f"http://images.cocodataset.org/train2017/{image_id:012d}.jpg"
        cv2.imwrite(str(root / "train2017" / f"{image_id:012d}.jpg"),
                    rng.integers(0, 256, (height, width, 3), dtype=np.uint8))  # fmt: skip
        doc_images.append({"id": image_id, "width": width, "height": height, "coco_url": url,
                           "neg_category_ids": [], "not_exhaustive_category_ids": []})  # fmt: skip
        for _ in range(10):
            w, h = rng.uniform(40, 400), rng.uniform(40, 300)
            x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(rng.integers(1, num_classes + 1)), "bbox": [x, y, w, h],
                                "area": w * h, "segmentation": [polygon]})  # fmt: skip
    categories = [{"id": i, "name": f"class_{i:04d}", "synset": f"class_{i:04d}.n.01", "synonyms": [],
                   "def": "", "frequency": "r", "image_count": 1, "instance_count": 1}
                  for i in range(1, num_classes + 1)]  # fmt: skip
    path = root / "annotations" / "lvis_v1_train.json"
    path.write_text(json.dumps({"images": doc_images, "annotations": annotations, "categories": categories}))
    return path


def _fixed_scale(pipeline: list) -> list:
    """The training pipeline with its multi-scale resize fixed at 1333x800, so every config times the same
    input size."""
    resize = {"type": "Resize", "scale": LVIS_IMAGE_SIZE, "keep_ratio": True}
    return [resize if step["type"] in ("RandomChoiceResize", "RandomResize") else step for step in pipeline]


def time_lvis_iteration(config: str, mode: str, data_root: Path, work: Path) -> dict:
    """Seconds per training iteration (forward, backward, SGD step) of ``config`` on two 1333x800 images.

    The real model of the config, randomly initialised (no ImageNet weights: this is a timing), and one
    batch from the config's own dataset and pipeline, reused for every iteration (data loading excluded).
    ``mode`` (:data:`LVIS_RUNS`) is "plain", "amp" or "deterministic", each set up as `eqlv2 train` sets it
    up, before CUDA starts in this process.
    """
    import torch
    from mmdet.registry import DATASETS, MODELS
    from mmengine.dataset import pseudo_collate
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from eqlv2.config import load_run_config
    from eqlv2.engine.precision import use_amp_optim_wrapper
    from eqlv2.engine.training import allow_missing_deterministic_kernels, seed_run

    if config.startswith("mmdet::"):  # eqlv2's loader names the classes from the data; give it a file
        wrapper = work / "mmdet_lvis.py"
        wrapper.write_text(f"_base_ = '{config}'\n")
        config = str(wrapper)
    cfg = load_run_config(config, data_root)
    if mode == "amp":
        use_amp_optim_wrapper(cfg)
    elif mode == "deterministic":
        seed_run(cfg, 0, deterministic=True)  # CUBLAS_WORKSPACE_CONFIG, before CUDA starts
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        allow_missing_deterministic_kernels(cfg)  # what mmengine's randomness turns on, with warn_only
    init_default_scope("mmdet")
    dataset_cfg = cfg.train_dataloader.dataset
    while "dataset" in dataset_cfg:  # mmdet's LVIS config wraps it for RFS; the sampling is not timed
        dataset_cfg = dataset_cfg.dataset
    dataset_cfg.pipeline = _fixed_scale(dataset_cfg.pipeline)
    dataset = DATASETS.build(dataset_cfg)
    batch = pseudo_collate([dataset[0], dataset[1]])
    shapes = {tuple(image.shape) for image in batch["inputs"]}
    width, height = LVIS_IMAGE_SIZE
    if shapes != {(3, height, width)}:
        _fail(f"{config}: the pipeline gave images of shapes {shapes}, not (3, {height}, {width})")
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter's initialisation
    model.init_weights()
    logger.setLevel(level)
    model.to(DEVICE).train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    if mode != "deterministic":
        torch.backends.cudnn.benchmark = bool(cfg.get("env_cfg", {}).get("cudnn_benchmark", False))
    torch.cuda.reset_peak_memory_stats()
    times, loss = [], None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(LVIS_WARMUP_ITERS + LVIS_TIMED_ITERS):
            torch.cuda.synchronize()
            start = time.perf_counter()
            log_vars = model.train_step(batch, optim_wrapper)
            torch.cuda.synchronize()
            if step >= LVIS_WARMUP_ITERS:
                times.append(time.perf_counter() - start)
            loss = float(log_vars["loss"].detach())
    warned = sorted({str(w.message).split(" does not have a deterministic")[0] for w in caught
                     if "deterministic" in str(w.message)})  # fmt: skip
    times.sort()
    return {
        "seconds_per_iter_median": round(times[len(times) // 2], 4),
        "seconds_per_iter_mean": round(sum(times) / len(times), 4),
        "max_memory_mib": torch.cuda.max_memory_allocated() // 2**20,
        "last_loss": loss, "finite": math.isfinite(loss), "warned_ops": warned,
    }  # fmt: skip


def lvis_iteration(report: Path, name: str, work: Path) -> None:
    """One of :data:`LVIS_RUNS`, in this process (started by :func:`lvis_timing`)."""
    _require_cuda()
    import eqlv2.plugin  # noqa: F401  (registers the package's modules)

    config, mode = LVIS_RUNS[name]
    figures = time_lvis_iteration(config, mode, work / "lvis_like", work)
    figures = {"config": config, "mode": mode, "exit_status": 0, **figures}
    update_report(report, "lvis_timing", {name: figures})


def lvis_timing(report: Path, work: Path) -> None:
    """Every run of :data:`LVIS_RUNS` in a process of its own (modes set up before CUDA starts, and a
    crash or a hang costs one run); fails when one did not give a finite loss."""
    write_lvis_like_data(work / "lvis_like")
    update_report(report, "lvis_timing", {
        "image_size": list(LVIS_IMAGE_SIZE), "images_per_iter": 2, "classes": LVIS_CLASSES,
        "warmup_iters": LVIS_WARMUP_ITERS, "timed_iters": LVIS_TIMED_ITERS,
    })  # fmt: skip
    failed = []
    for name, (config, mode) in LVIS_RUNS.items():
        command = [sys.executable, "-X", "faulthandler", str(SELF), "--report", str(report), "lvis-iteration",
                   name, "--work", str(work)]  # fmt: skip
        result, _ = run_child(command, LVIS_RUN_TIMEOUT)
        if result["exit_status"] != 0:
            how = how_it_ended(result)
            update_report(report, "lvis_timing", {name: {
                "config": config, "mode": mode, "exit_status": result["exit_status"],
                "error": f"{how}: {result['stderr_tail']}",
            }})  # fmt: skip
            failed.append(f"{name} ({how})")
    runs = json.loads(report.read_text())["lvis_timing"]
    failed += [name for name in LVIS_RUNS if runs[name]["exit_status"] == 0 and not runs[name]["finite"]]
    if failed:
        _fail(f"LVIS iterations failed or gave a non-finite loss: {', '.join(failed)}")


def record_step(report: Path, step: str, status: str, seconds: float, error: str | None) -> None:
    update_report(report, "steps", {step: {"status": status, "seconds": round(seconds, 1), "error": error}})


def default_report() -> Path:
    """``$OUT/gpu_check.json`` where the device tool's OUT is set, else ``benchmarks/out/gpu_check.json``."""
    return Path(os.environ["OUT"] if os.environ.get("OUT") else HERE / "out") / "gpu_check.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, default=default_report(), help="default: %(default)s")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("layout", help="print the report's layout, every figure null")
    p = sub.add_parser("record", help="record a step's status and time (the shell script's steps)")
    p.add_argument("step", choices=STEPS)
    p.add_argument("--status", required=True, choices=("ok", "failed", "reused", "skipped"))
    p.add_argument("--seconds", required=True, type=float)
    p.add_argument("--error")
    p = sub.add_parser("preflight", help="bundle, preinstalled packages, GPU, nvcc; writes the card's arch")
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument("--arch-file", type=Path, required=True, help="where to write TORCH_CUDA_ARCH_LIST")
    p = sub.add_parser("build", help="record the build's settings")
    p.add_argument("--arch-list", required=True)
    p.add_argument("--max-jobs", required=True, type=int)
    p = sub.add_parser("built-against", help="before the build: record the torch it compiles against")
    p.add_argument("--work", type=Path, required=True)
    p = sub.add_parser("provenance", help="the torch of the base interpreter, of the venv, and mmcv's")
    p.add_argument("--base-python", required=True)
    p.add_argument("--work", type=Path, required=True)
    p = sub.add_parser("doctor", help="eqlv2 doctor --require-gpu, whole and --isolate, each in a child")
    p.add_argument("--timeout", type=float, default=120)
    sub.add_parser("mmap-reader", help="the old mapped reader of mmcv's library at each stage")
    p = sub.add_parser("mmap-probe", help="one stage of mmap-reader (run by it)")
    p.add_argument("stage", choices=list(MMAP_STAGES))
    p.add_argument("path")
    sub.add_parser("ops", help="RoIAlign and nms on CUDA against the CPU")
    sub.add_parser("eqlv2-loss", help="EQLv2's loss and statistics on CUDA against the CPU")
    sub.add_parser("nccl", help="torchrun --nproc-per-node=1: an NCCL group and an all-reduce")
    sub.add_parser("nccl-worker", help="the process torchrun starts for nccl")
    p = sub.add_parser("workflow", help="snakemake on CI's small setting, GPU jobs on this GPU")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="scratch folder")
    p.add_argument("--timeout", type=float, default=300)
    p = sub.add_parser("lvis-timing", help="time a training iteration of the LVIS v1 configs")
    p.add_argument("--work", type=Path, required=True, help="scratch folder (data)")
    p = sub.add_parser("lvis-iteration", help="one run of lvis-timing (run by it)")
    p.add_argument("name", choices=list(LVIS_RUNS))
    p.add_argument("--work", type=Path, required=True)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    commands = {
        "layout": lambda: print(json.dumps(layout(), indent=2)),
        "record": lambda: record_step(args.report, args.step, args.status, args.seconds, args.error),
        "preflight": lambda: preflight(args.report, args.bundle, args.arch_file),
        "build": lambda: record_build(args.report, args.arch_list, args.max_jobs),
        "built-against": lambda: record_built_against(args.work),
        "provenance": lambda: provenance(args.report, args.base_python, args.work),
        "doctor": lambda: doctor(args.report, args.timeout),
        "mmap-reader": lambda: mmap_reader(args.report),
        "mmap-probe": lambda: mmap_probe(args.stage, args.path),
        "ops": lambda: check_ops(args.report),
        "eqlv2-loss": lambda: check_eqlv2_loss(args.report),
        "nccl": lambda: nccl(args.report),
        "nccl-worker": nccl_worker,
        "workflow": lambda: run_workflow(args.report, args.repo, args.work, args.timeout),
        "lvis-timing": lambda: lvis_timing(args.report, args.work),
        "lvis-iteration": lambda: lvis_iteration(args.report, args.name, args.work),
    }
    commands[args.command]()


if __name__ == "__main__":
    main()
