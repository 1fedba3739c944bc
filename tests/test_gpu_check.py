"""benchmarks/gpu_check.sh without a GPU: its plan and report layout (--dry-run), its argument handling, its
time limits and budget, that it stops at once, saying why, where it cannot run, that the bundle it carries
holds what the packages (snakemake's included) import, and the check's own Python parts run on the CPU:
the device comparisons CPU against CPU, the provenance, the doctor as a child, the mapped reader, the
workflow step.  What needs a CUDA GPU (NCCL, the LVIS timings, the workflow's GPU jobs) is not run here."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
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
    carry = head.split("\ncarry: ")[1].split("\nbundle size: ")[0].splitlines()[1:]
    pins = [f"{name}=={version}" for name, version in gpu_check.bundle_requirements()]
    assert [line.strip() for line in carry] == ["sdist/mmcv-2.1.0.tar.gz"] + [f"wheels: {p}" for p in pins]
    assert "snakemake==9.27.1" in pins  # the workflow step runs the workflow there
    assert "bundle size: no bundle at" in head
    assert "budget: 540 s for the call" in head
    lines = head.split("\nsteps:\n")[1].splitlines()
    limits = {}
    steps = {}
    for line in lines:
        match = re.fullmatch(r"  (\w+): \(at most (\d+) s\) (.+)", line)
        assert match, line
        limits[match.group(1)], steps[match.group(1)] = int(match.group(2)), match.group(3)
    assert list(steps) == list(gpu_check.STEPS)
    assert all(0 < limit <= 420 for limit in limits.values())
    for needed in ("FORCE_CUDA=1", "TORCH_CUDA_ARCH_LIST=", "--no-build-isolation", "--no-index",
                   "mmcv-2.1.0", "built-against"):  # fmt: skip
        assert needed in steps["build_mmcv"]
    assert "doctor" not in steps["build_mmcv"]  # the doctor is a step of its own, and not fatal
    assert "eqlv2 doctor --require-gpu --json" in steps["doctor"] and "--isolate" in steps["doctor"]
    stages = ("file only", "library loaded", "after CUDA started")
    assert all(stage in steps["mmap_reader"] for stage in stages)
    assert "--system-site-packages" in steps["venv"] and "--ignore-requires-python" in steps["install"]
    assert "torchrun --standalone --nproc-per-node=1" in steps["nccl"]
    for needed in ("snakemake", "--resources gpu=3", ".test/config_small", "eqlv2 doctor --require-gpu",
                   "paper_table.md", *gpu_check.WORKFLOW_METHODS):  # fmt: skip
        assert needed in steps["workflow"]
    assert all(c.split("/")[-1] in steps["lvis_timing"] for c, _ in gpu_check.LVIS_RUNS.values())
    assert "--amp" in steps["lvis_timing"] and "deterministic" in steps["lvis_timing"]
    assert f"report: {tmp_path / 'out' / 'gpu_check.json'}" in head

    layout = json.loads(layout_text)
    assert layout == gpu_check.layout()
    assert list(layout["steps"]) == list(gpu_check.STEPS)
    assert {"ce", "eqlv2", "mmdet_lvis", "eqlv2_amp", "eqlv2_deterministic"} <= set(layout["lvis_timing"])
    assert set(gpu_check.MMAP_STAGES) <= set(layout["mmap_reader"])
    assert set(layout["doctor"]) == {"whole", "isolated"}
    measured = {key: value for key, value in _leaves(layout) if value is not None}
    assert measured == {"format": "eqlv2-gpu-check/2"}  # nothing is filled in before it is measured
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_unknown_arguments_and_steps_are_refused_with_one_line(tmp_path):
    for args, named in ((["--steps", "ops,bogus"], "unknown step 'bogus'"),
                        (["--fast"], "unknown argument '--fast'"),
                        (["--budget", "soon"], "--budget needs a number of seconds"),
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


def test_a_step_past_its_time_limit_is_stopped_and_the_budget_skips_what_no_longer_fits(tmp_path):
    # A venv whose interpreter hangs: the provenance step gets what is left of a 21 s budget, is stopped
    # there, and the doctor after it, with no time left, is recorded as skipped for the budget.
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "venv" / "bin").mkdir(parents=True)
    hanging = work / "venv" / "bin" / "python"
    hanging.write_text("#!/bin/sh\nsleep 120\n")
    hanging.chmod(0o755)
    out.mkdir()
    (out / "gpu_check.json").write_text(json.dumps(gpu_check.layout()))
    result = _run("--work", str(work), "--budget", "21", "--steps", "provenance,doctor", out=out)
    assert result.returncode == 1
    steps = json.loads((out / "gpu_check.json").read_text())["steps"]
    assert steps["provenance"]["status"] == "failed"
    assert steps["provenance"]["error"].startswith("stopped at its time limit of 2")
    assert steps["provenance"]["seconds"] < 40  # the step's whole process group went, sleep included
    assert steps["doctor"]["status"] == "skipped" and "budget of 21 s was spent" in steps["doctor"]["error"]


def test_provenance_names_each_interpreters_torch_and_refuses_an_mmcv_built_against_another(tmp_path):
    report = tmp_path / "gpu_check.json"
    command = ["--report", str(report), "provenance", "--base-python", sys.executable, "--work",
               str(tmp_path)]  # fmt: skip
    gpu_check.main(command)
    facts = json.loads(report.read_text())["provenance"]
    import torch

    assert facts["venv"]["torch_version"] == torch.__version__
    assert facts["venv"]["torch_path"] == torch.__file__ and facts["base"]["torch_path"] == torch.__file__
    assert facts["same_torch"] is None  # this check built no mmcv here: not known
    assert facts["mmcv_cuda"] == "not available" and facts["mmcv_ext"].endswith(".so")
    # recorded before a build, then a venv whose torch is another one: refused, naming both
    (tmp_path / "mmcv_built_against.json").write_text(json.dumps(
        {**facts["venv"], "torch_version": "2.11.0+cu130", "torch_path": "/elsewhere/torch/__init__.py"}))
    result = subprocess.run([sys.executable, str(gpu_check.SELF), *command], capture_output=True, text=True)
    assert result.returncode == 1
    assert "mmcv was built against torch 2.11.0+cu130 at /elsewhere/torch" in result.stderr
    assert json.loads(report.read_text())["provenance"]["same_torch"] is False


def test_the_doctor_step_records_the_doctor_as_jobs_run_it_whole_and_probe_by_probe(tmp_path):
    # On this CPU machine the doctor, as a GPU job runs it, refuses (no GPU): recorded with its exit
    # status and every probe's status, for the whole run and the isolated one, and the step fails.
    report = tmp_path / "gpu_check.json"
    result = subprocess.run([sys.executable, str(gpu_check.SELF), "--report", str(report), "doctor",
                             "--timeout", "120"], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 1 and "eqlv2 doctor --require-gpu did not pass (exit status" in result.stderr
    doctor = json.loads(report.read_text())["doctor"]
    for run in doctor.values():
        assert run["exit_status"] not in (0, None) and run["signal"] is None and not run["timed_out"]
        assert run["ok"] is False and any("no GPU is visible" in p for p in run["problems"])
        assert {"torch", "mmcv_ops", "gpus"} <= set(run["probes"])
        assert all(probe["status"] in ("ok", "skipped") for probe in run["probes"].values())


def test_the_mapped_reader_reads_what_pread_reads_and_its_stages_are_recorded(tmp_path):
    fatbin = REPO / "tests" / "data" / "fatbin_sm80_sm90a_sm100f_compute90.so"
    from eqlv2.cuda_arch import fatbin_architectures

    assert gpu_check.mapped_fatbin_architectures(str(fatbin)) == sorted(set(fatbin_architectures(fatbin)))
    report = tmp_path / "gpu_check.json"
    gpu_check.main(["--report", str(report), "mmap-reader"])
    figures = json.loads(report.read_text())["mmap_reader"]
    assert figures["pread_archs"] == []  # this machine's mmcv is a CPU build: no device code
    for stage in ("file_only", "ext_loaded"):
        assert figures[stage]["exit_status"] == 0 and figures[stage]["archs"] == []
    # without CUDA the last stages cannot run: no crash, so no verdict either way
    assert figures["cuda_started"]["exit_status"] == 1 and figures["cuda_started"]["signal"] is None
    assert figures["verdict"].startswith("inconclusive: no crash") and "cuda_started" in figures["verdict"]


def test_a_crashing_child_is_recorded_with_its_signal():
    result, _ = gpu_check.run_child([sys.executable, "-c", "import ctypes; ctypes.string_at(0)"], timeout=30)
    assert result["signal"] == "SIGSEGV" and gpu_check.how_it_ended(result) == "SIGSEGV"
    result, _ = gpu_check.run_child([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert result["timed_out"] and result["exit_status"] is None
    assert gpu_check.how_it_ended(result) == "timed out"


def test_the_workflow_step_runs_the_workflow_to_the_paper_table(tmp_path):
    # The step's own plumbing, on the CPU (gpus: 0) with a 20-iteration schedule: the real Snakefile from
    # the generated data to the table, each output's rule and status from snakemake --summary.
    config = gpu_check.workflow_config(REPO, gpus=1)
    assert list(config["methods"]) == list(gpu_check.WORKFLOW_METHODS) and "openimages" not in config
    assert config["resources"]["train"]["gpus"] == config["resources"]["predict"]["gpus"] == 1
    assert config["resources"]["evaluate"]["gpus"] == 0  # scoring stays on the CPU, as on a cluster
    report = tmp_path / "gpu_check.json"
    gpu_check.run_workflow(report, REPO, tmp_path, timeout=900, gpus=0, max_iters=20)
    figures = json.loads(report.read_text())["workflow"]
    assert figures["exit_status"] == 0 and not figures["timed_out"] and figures["seconds"] > 0
    assert figures["methods"] == list(gpu_check.WORKFLOW_METHODS)
    assert figures["jobs"]["train"] == 2 * len(gpu_check.WORKFLOW_METHODS)  # model and gradients each
    assert figures["jobs"]["surgery"] == 1 and figures["jobs"]["paper_table"] == 3
    assert all(line.endswith(": ok") for line in figures["outputs"]), figures["outputs"]
    assert figures["doctor_runs"] == 0  # CPU jobs run no doctor; on the GPU every train/predict job does
    rows = [line for line in figures["table"].splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(gpu_check.WORKFLOW_METHODS)  # header, rule, a row per method
