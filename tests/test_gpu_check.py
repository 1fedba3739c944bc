"""benchmarks/gpu_check.sh without a GPU: its plan and report layout (--dry-run), its argument handling, that
it stops at once, saying why, where it cannot run, and that the bundle it carries holds what the packages
import.  The checks themselves need a CUDA GPU and are not run here."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .conftest import REPO
from .workflow_helpers import env

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
_spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)
# The GPU machine's interpreter, for the requirements' environment markers.
TARGET = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
          "os_name": "posix", "platform_system": "Linux", "platform_machine": "x86_64",
          "implementation_name": "cpython", "platform_python_implementation": "CPython",
          "extra": ""}  # fmt: skip
# Declared requirements that are met otherwise there: cv2 comes from the image's headless OpenCV, lvis
# declares Cython but imports it nowhere, mmcv is built there from its sdist.
MET_OTHERWISE = {"opencv-python", "cython", "mmcv"}


def _run(*args: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env={**env(), "OUT": str(out)})  # fmt: skip


def _leaves(tree: dict, path: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{path}{key}.")
        else:
            yield f"{path}{key}", value


def test_dry_run_shows_what_it_carries_runs_and_writes(tmp_path):
    result = _run("--dry-run", "--bundle", str(tmp_path / "no-bundle"), out=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    head, layout_text = result.stdout.split("\nlayout:\n")
    carry = head.split("\ncarry: ")[1].split("\nsteps:\n")[0].splitlines()[1:]
    pins = [f"{name}=={version}" for name, version in gpu_check.bundle_requirements()]
    assert [line.strip() for line in carry] == ["sdist/mmcv-2.1.0.tar.gz"] + [f"wheels: {p}" for p in pins]
    steps = dict(line.strip().split(": ", 1) for line in head.split("\nsteps:\n")[1].splitlines())
    assert list(steps) == list(gpu_check.STEPS)
    for needed in ("FORCE_CUDA=1", "TORCH_CUDA_ARCH_LIST=", "--no-build-isolation", "--no-index",
                   "mmcv-2.1.0", "eqlv2 doctor --require-gpu"):  # fmt: skip
        assert needed in steps["build_mmcv"]
    assert "--system-site-packages" in steps["venv"] and "--ignore-requires-python" in steps["install"]
    assert "--max-iters 200" in steps["toy_training"]
    assert all(c.split("/")[-1] in steps["lvis_timing"] for c in gpu_check.LVIS_CONFIGS.values())
    assert f"report: {tmp_path / 'out' / 'gpu_check.json'}" in head

    layout = json.loads(layout_text)
    assert layout == gpu_check.layout()
    assert list(layout["steps"]) == list(gpu_check.STEPS)
    assert set(layout["toy_training"]) == {"make_toy_seconds", "baseline", "eqlv2"}
    assert {"ce", "eqlv2", "mmdet_lvis"} <= set(layout["lvis_timing"])
    measured = {key: value for key, value in _leaves(layout) if value is not None}
    assert measured == {"format": "eqlv2-gpu-check/1"}  # nothing is filled in before it is measured
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_unknown_arguments_and_steps_are_refused_with_one_line(tmp_path):
    for args, named in ((["--steps", "ops,bogus"], "unknown step 'bogus'"),
                        (["--fast"], "unknown argument '--fast'"),
                        (["--work"], "--work needs a value")):  # fmt: skip
        result = _run("--dry-run", *args, out=tmp_path)
        lines = result.stderr.splitlines()
        assert result.returncode == 2 and len(lines) == 1
        assert lines[0].startswith(f"gpu_check.sh: error: {named}")


def test_a_run_without_the_bundle_stops_at_preflight_and_says_so(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    result = _run("--bundle", str(tmp_path / "no-bundle"), "--work", str(work), out=out)
    assert result.returncode == 1
    report = json.loads((out / "gpu_check.json").read_text())
    preflight = report["steps"]["preflight"]
    assert preflight["status"] == "failed" and "run benchmarks/gpu_bundle.sh" in preflight["error"]
    assert all(report["steps"][s]["status"] == "skipped" for s in gpu_check.STEPS[1:])
    assert report["machine"]["gpu"] is None and not (work / "venv").exists()


def test_a_check_refuses_to_run_without_a_gpu(tmp_path):
    report = tmp_path / "gpu_check.json"
    command = [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--report", str(report), "ops"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("gpu_check: error: no CUDA GPU is visible to torch")
    assert not report.exists()  # no figure was measured, none is written


def test_steps_are_recorded_into_the_layout(tmp_path):
    report = tmp_path / "gpu_check.json"
    for step, status in (("venv", "ok"), ("build_mmcv", "reused")):
        gpu_check.main(["--report", str(report), "record", step, "--status", status, "--seconds", "12.34"])
    steps = json.loads(report.read_text())["steps"]
    assert steps["venv"] == {"status": "ok", "seconds": 12.3, "error": None}
    assert steps["build_mmcv"]["status"] == "reused" and steps["ops"]["status"] is None


def test_the_device_checks_compare_a_device_with_the_cpu_exactly_when_it_is_the_cpu(tmp_path):
    # The checks' own plumbing, runnable without a GPU: a device that computes what the CPU computes is
    # reported as agreeing, to the last bit, with every section filled.  (What only a GPU shows is not
    # caught here: the first run on an H200 found the checks reading the gradient of a non-leaf copy,
    # None; each device now gets leaf tensors of its own.)
    report = tmp_path / "gpu_check.json"
    report.write_text(json.dumps(gpu_check.layout()))
    gpu_check.check_ops(report, device="cpu")
    gpu_check.check_eqlv2_loss(report, iterations=2, device="cpu")
    figures = json.loads(report.read_text())
    roi_align, nms = figures["ops"]["roi_align"], figures["ops"]["nms"]
    assert roi_align["ok"] and roi_align["forward_max_abs_diff"] == roi_align["backward_max_abs_diff"] == 0
    assert nms["ok"] and nms["same_kept"] and 0 < nms["kept_cuda"] == nms["kept_cpu"] < 2000
    assert figures["ops"]["batched_nms"]["ok"]
    loss = figures["eqlv2_loss"]
    assert loss["ok"] and loss["iterations"] == 2
    assert [loss[f"{name}_max_abs_diff"] for name in ("loss", "grad", "pos_grad", "neg_grad")] == [0] * 4


def _requirements(dist: str) -> set[str]:
    found = set()
    for text in metadata.requires(dist) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(TARGET):
            found.add(canonicalize_name(requirement.name))
    return found


def test_the_bundle_holds_what_eqlv2_and_its_packages_import():
    pins = dict(gpu_check.bundle_requirements())
    # the versions carried are the ones this project runs and tests
    assert {name: metadata.version(name) for name in pins} == pins
    there = {canonicalize_name(n) for n in [*pins, *gpu_check.PREINSTALLED.values()]}
    missing = {f"{dist} needs {need}" for dist in [*pins, "mmcv"] for need in _requirements(dist)
               if need not in there | MET_OTHERWISE}  # fmt: skip
    assert not missing

    distributions = metadata.packages_distributions()
    imported = set()
    for path in (REPO / "src" / "eqlv2").rglob("*.py"):
        if "configs" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"eqlv2"}
    needed = {canonicalize_name(d) for module in third_party for d in distributions[module]}
    assert needed - there - MET_OTHERWISE == set(), third_party
