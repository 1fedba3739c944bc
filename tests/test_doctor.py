"""`eqlv2 doctor`: the real report on this CPU-only machine, its judgement of cards it does not have, and
that no probe can take it down: a probe that crashes or hangs is a warning naming it, exit 0.

Probes are made to misbehave the way a broken native library would, in the child process that answers
them: a ``sitecustomize`` on PYTHONPATH replaces a probe of :mod:`eqlv2.probes` in every interpreter
the test starts (the doctor's children included), with code that reads address 0, sleeps, or claims a
GPU this machine does not have.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eqlv2.cli import main
from eqlv2.doctor import Diagnosis, Facts, Gpu, ProbeResult, diagnose
from eqlv2.probes import PROBES, cudnn_version

from .workflow_helpers import SMALL_CONFIG, run_snakemake, write_config

CPU_ONLY = Facts(
    torch="2.13.0+cpu", torch_file="/site-packages/torch/__init__.py", cuda=None, cudnn=None, nccl=None,
    torch_archs=[], mmcv="2.1.0", mmdet="3.3.0", mmengine="0.10.7", mmcv_ext="/site-packages/mmcv/_ext.so",
    mmcv_cuda=None, mmcv_archs=[], gpus=[],
)  # fmt: skip
H200 = Gpu(0, "NVIDIA H200", (9, 0))
B200 = Gpu(0, "NVIDIA B200", (10, 0))
ORDER = ["torch", "mmcv_ops", "mmcv_archs", "cudnn", "nccl", "gpus", "functional"]
CRASH = "lambda **_: exec('import ctypes; ctypes.string_at(0)')"  # reads address 0, as a broken library would
H200_VISIBLE = (
    "lambda: {'gpus': [{'index': 0, 'name': 'NVIDIA H200', 'capability': [9, 0]}], 'torch_archs': ['sm_90']}"
)


def _cuda_build(mmcv_archs: list[str], gpus: list[Gpu], mmcv_cuda: str = "13.0") -> Facts:
    return dataclasses.replace(CPU_ONLY, torch="2.13.0", cuda="13.0", cudnn="9.13.0", nccl="2.27.7",
                               mmcv_cuda=mmcv_cuda, mmcv_archs=mmcv_archs, gpus=gpus)  # fmt: skip


def _doctor(tmp_path: Path, *args: str, patches: dict[str, str] | None = None, extra: str = ""):
    """Run `python -m eqlv2 doctor ARGS` with the probes in ``patches`` replaced by the given expressions
    (in every interpreter it starts); returns the finished process and its wall time."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    lines = ["import eqlv2.probes as probes", extra]
    lines += [f"probes.PROBES[{name!r}] = {code}" for name, code in (patches or {}).items()]
    (site / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "eqlv2", "doctor", *args], capture_output=True, text=True,
                            env=env, timeout=300)  # fmt: skip
    return result, time.monotonic() - start


def test_this_machine_has_no_gpu_and_cpu_only_operators_which_is_fine():
    result = subprocess.run([sys.executable, "-m", "eqlv2", "doctor"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ("torch", "CUDA (torch.version.cuda)", "cuDNN", "NCCL", "mmcv", "mmdet", "mmengine"):
        assert any(line.startswith(f"{name}: ") for line in lines), (name, lines)
    assert "mmcv: 2.1.0" in lines and "mmdet: 3.3.0" in lines and "mmengine: 0.10.7" in lines
    assert "GPUs: none visible to torch" in lines
    assert any(line.startswith("mmcv operators: CPU-only, compiled without CUDA (") for line in lines)
    assert "mmcv CUDA architectures: none" in lines
    assert not any(line.startswith("warning: ") for line in lines)
    assert lines[-1] == "doctor: ok"


def test_json_report_says_how_each_probe_went_and_require_gpu_fails_with_one_line(capsys):
    import torch

    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == [] and report["warnings"] == []
    assert report["gpus"] == [] and report["torch_archs"] == [] and report["isolated"] is False
    assert report["mmcv"] == "2.1.0" and report["mmcv_cuda"] is None and report["mmcv_archs"] == []
    assert report["torch"] == torch.__version__ and report["torch_file"] == torch.__file__
    assert list(report["probes"]) == ORDER == list(PROBES)
    assert {name: probe["status"] for name, probe in report["probes"].items()} == {
        **dict.fromkeys(ORDER, "ok"), "functional": "skipped"}  # fmt: skip
    assert report["probes"]["functional"]["error"] == "no GPU visible"

    assert main(["doctor", "--require-gpu"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("eqlv2 doctor: error: no GPU is visible to torch ")


def test_the_doctors_own_process_asks_native_code_nothing():
    """The probes run in children: the doctor's process never initialises CUDA nor reads mmcv's library
    for the report (a library it loads by importing mmdet is loaded by the training as well)."""
    code = (
        "import builtins, eqlv2.cuda_arch as arch, torch\n"
        "def refuse(*a, **k): raise SystemExit('the doctor asked native code in its own process')\n"
        "arch.fatbin_architectures = arch.elf_section = refuse\n"
        "torch.cuda.device_count = torch.cuda.get_device_name = torch.cuda.init = refuse\n"
        "torch.backends.cudnn.version = refuse\n"
        "from eqlv2.cli import main\n"
        "raise SystemExit(main(['doctor']))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "doctor: ok"


def test_a_probe_that_crashes_is_a_warning_naming_it_and_the_doctor_goes_on(tmp_path):
    result, _ = _doctor(tmp_path, "--json", patches={"cudnn": CRASH})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    probes = report["probes"]
    assert probes["cudnn"]["status"] == "crashed" and probes["cudnn"]["signal"] == "SIGSEGV"
    # The probes after it were answered by a fresh child.
    assert all(probes[name]["status"] == "ok" for name in ("torch", "mmcv_ops", "mmcv_archs", "nccl", "gpus"))
    assert report["warnings"] == [
        "probe cudnn gave no answer (its process died of SIGSEGV); the doctor went on without it"
    ]
    assert report["ok"] is True and report["cudnn"] is None and report["gpus"] == []
    # The job's log shows where the child crashed: faulthandler's Python stack, relayed.
    assert "eqlv2 doctor: probe cudnn: what its process printed:" in result.stderr
    assert "Fatal Python error: Segmentation fault" in result.stderr
    assert "eqlv2/probes.py" in result.stderr


def test_the_text_report_names_the_crashed_probe_where_its_fact_would_be(tmp_path):
    result, _ = _doctor(tmp_path, patches={"nccl": CRASH})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "NCCL: unknown (probe nccl: its process died of SIGSEGV)" in lines
    assert (
        "warning: probe nccl gave no answer (its process died of SIGSEGV); the doctor went on without it"
        in lines
    )
    assert lines[-1] == "doctor: ok, 1 warning(s)"


def test_a_probe_that_hangs_is_stopped_at_its_time_limit_with_its_stack_in_the_log(tmp_path):
    result, seconds = _doctor(tmp_path, "--json", "--probe-timeout", "3",
                              patches={"gpus": "lambda: __import__('time').sleep(600)"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    gpus = report["probes"]["gpus"]
    assert gpus["status"] == "timeout" and gpus["seconds"] == pytest.approx(3, abs=1)
    assert report["warnings"] == [
        "probe gpus gave no answer (it gave no answer in 3 s and was stopped); the doctor went on without it"
    ]
    assert report["gpus"] is None and report["probes"]["functional"]["status"] == "skipped"
    assert "Fatal Python error: Aborted" in result.stderr  # faulthandler's stack of where it hung:
    assert "sitecustomize.py" in result.stderr and "eqlv2/probes.py" in result.stderr
    assert seconds < 60  # stopped, not waited for


def test_a_hung_gpu_count_is_no_evidence_against_a_gpu_job(tmp_path):
    """--require-gpu refuses a job that sees no GPU; a count that never came is not "none"."""
    result, _ = _doctor(tmp_path, "--require-gpu", "--probe-timeout", "3",
                        patches={"gpus": "lambda: __import__('time').sleep(600)"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "GPUs: unknown (probe gpus: it gave no answer in 3 s and was stopped)" in result.stdout.splitlines()
    )


def test_a_real_problem_still_stops_the_job_in_one_line(tmp_path):
    """mmcv's CPU-only operators with a GPU visible: positive evidence, exit 2, one line on stderr."""
    result, seconds = _doctor(tmp_path, "--require-gpu", patches={"gpus": H200_VISIBLE})
    assert result.returncode == 2
    err = result.stderr.splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("eqlv2 doctor: error: GPU 0 (NVIDIA H200, compute capability 9.0) is visible "
                             "but mmcv's operators were compiled without CUDA (")  # fmt: skip
    assert "GPU 0 (NVIDIA H200, compute capability 9.0)" in result.stdout.splitlines()
    assert seconds < 30  # seconds, not minutes: the job is refused before its data is loaded


def test_a_functional_probe_that_fails_on_the_card_stops_the_job(tmp_path):
    """The headers may say the card is covered; nms failing with "no kernel image" there is what counts."""
    headers_say_sm_90 = (
        "from importlib.util import find_spec\n"
        "def no_kernel_image(devices):\n"
        "    raise RuntimeError('CUDA error: no kernel image is available for execution on the device'\n"
        "                       '\\nCUDA kernel errors might be asynchronously reported')\n"
        "probes.PROBES['mmcv_ops'] = lambda: {'ext': find_spec('mmcv._ext').origin, 'cuda': '13.0'}\n"
        "probes.PROBES['mmcv_archs'] = lambda path: ['sm_90']\n"
        "probes.PROBES['functional'] = no_kernel_image\n"
    )
    patches = {"gpus": H200_VISIBLE}
    result, _ = _doctor(tmp_path, "--require-gpu", patches=patches, extra=headers_say_sm_90)
    assert result.returncode == 2, result.stdout
    assert result.stderr.splitlines() == [
        "eqlv2 doctor: error: mmcv's nms and RoIAlign do not run on the GPU (RuntimeError: CUDA error: no "
        "kernel image is available for execution on the device): " + (
            "rebuild mmcv with FORCE_CUDA=1 and TORCH_CUDA_ARCH_LIST naming this card (see the README)")
    ]  # fmt: skip


def test_a_library_the_parser_does_not_understand_is_a_warning(tmp_path):
    unknown_layout = (
        "def unknown_layout(path):\n"
        "    raise ValueError(path + ': .nv_fatbin: no fat-binary container at offset 0 (magic 0x1)')\n"
        "probes.PROBES['mmcv_archs'] = unknown_layout\n"
    )
    result, _ = _doctor(tmp_path, "--json", extra=unknown_layout)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["probes"]["mmcv_archs"]["status"] == "failed" and report["mmcv_archs"] is None
    assert len(report["warnings"]) == 1 and "no fat-binary container" in report["warnings"][0]


def test_isolate_gives_every_probe_a_process_of_its_own(tmp_path):
    pids = tmp_path / "pids"
    record = (
        "import os\n"
        "def recorded(probe):\n"
        "    def run(**args):\n"
        f"        open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "        return probe(**args)\n"
        "    return run\n"
        "for _name in list(probes.PROBES): probes.PROBES[_name] = recorded(probes.PROBES[_name])\n"
    )
    together, _ = _doctor(tmp_path, "--json", extra=record)
    assert together.returncode == 0, together.stderr
    assert len(set(pids.read_text().split())) == 1  # one child answered all six probes asked
    pids.unlink()
    isolated, _ = _doctor(tmp_path, "--json", "--isolate", extra=record)
    assert isolated.returncode == 0, isolated.stderr
    assert json.loads(isolated.stdout)["isolated"] is True
    assert len(set(pids.read_text().split())) == 6  # functional is skipped without a GPU
    assert os.getpid() not in map(int, pids.read_text().split())


@pytest.mark.parametrize(
    ("facts", "verdict"),
    [(_cuda_build(["sm_80", "sm_90"], [H200]), None),
     (_cuda_build(["sm_80"], [H200]), "built for sm_80, none of which runs on GPU 0 (NVIDIA H200, "
                                      "compute capability 9.0)"),
     (_cuda_build(["sm_80", "sm_90", "compute_90"], [B200]), None),  # PTX, compiled by the driver
     (_cuda_build(["sm_80", "sm_90"], [B200]), "none of which runs on GPU 0 (NVIDIA B200"),
     (_cuda_build(["sm_80"], [Gpu(0, "NVIDIA A40", (8, 6)), Gpu(1, "NVIDIA A40", (8, 6))]), None),
     (dataclasses.replace(CPU_ONLY, gpus=[H200]),
      "GPU 0 (NVIDIA H200, compute capability 9.0) is visible but mmcv's operators were compiled without"),
     (_cuda_build(["sm_90"], [H200], mmcv_cuda="12.4"), "compiled with CUDA 12.4 but torch 2.13.0 uses CUDA "
                                                        "13.0"),
     (CPU_ONLY, None)],
    ids=["9.0-sm80-sm90", "9.0-only-sm80", "10.0-compute90-ptx", "10.0-no-ptx", "8.6-two-cards-sm80",
         "cpu-only-mmcv-with-gpu", "cuda-major-mismatch", "cpu-machine"],
)  # fmt: skip
def test_verdict_on_cards_this_machine_does_not_have(facts, verdict):
    problems = diagnose(facts).problems
    if verdict is None:
        assert problems == []
    else:
        assert len(problems) == 1 and verdict in problems[0], problems
        assert "rebuild mmcv" in problems[0]


def test_nms_and_roialign_running_on_the_card_outweigh_the_headers():
    facts = _cuda_build(["sm_80"], [H200])
    ran = {"functional": ProbeResult("functional", "ok", 1.0, value={"largest_difference": {"cuda:0": 0.0}})}
    diagnosis = diagnose(facts, probes=ran)
    assert diagnosis.problems == []
    assert diagnosis.warnings == [
        "mmcv's CUDA operators are built for sm_80, none of which runs on GPU 0 (NVIDIA H200, compute "
        "capability 9.0) by the library's headers, yet nms and RoIAlign ran there: trusting the run"
    ]
    crashed = {
        "functional": ProbeResult("functional", "crashed", 1.0, signal="SIGSEGV", error="exit status -11")
    }
    diagnosis = diagnose(facts, probes=crashed)  # no run to outweigh them: the headers stand
    assert len(diagnosis.problems) == 1 and "none of which runs on GPU 0" in diagnosis.problems[0]
    assert diagnosis.warnings == [
        "probe functional gave no answer (its process died of SIGSEGV); the doctor went on without it"
    ]


def test_operators_that_do_not_import_are_a_problem_and_unknown_facts_are_not():
    no_ops = {"mmcv_ops": ProbeResult("mmcv_ops", "failed", 0.5, error="ImportError: libcudart.so.13: cannot "
                                      "open shared object file")}  # fmt: skip
    facts = dataclasses.replace(CPU_ONLY, mmcv_ext=None, mmcv_archs=None)
    assert diagnose(facts, probes=no_ops) == Diagnosis(
        ["mmcv's operators cannot be imported (ImportError: libcudart.so.13: cannot open shared object "
         "file)"],
        [])  # fmt: skip
    unknown = dataclasses.replace(CPU_ONLY, gpus=None, cuda=None)
    lost = {"gpus": ProbeResult("gpus", "crashed", 0.2, signal="SIGBUS"),
            "torch": ProbeResult("torch", "timeout", 60.0)}  # fmt: skip
    assert diagnose(unknown, require_gpu=True, probes=lost).problems == []


def test_a_gpu_job_that_sees_no_gpu_is_refused():
    refused = diagnose(CPU_ONLY, require_gpu=True).problems
    assert refused == ["no GPU is visible to torch 2.13.0+cpu (it is a CPU build)"]
    cuda_torch_no_gpu = _cuda_build(["sm_80", "sm_90"], [])
    assert diagnose(cuda_torch_no_gpu).problems == []
    assert "check the job's GPU request" in diagnose(cuda_torch_no_gpu, require_gpu=True).problems[0]


def test_cudnn_versions_read_as_torch_reports_them():
    assert cudnn_version(8907) == "8.9.7" and cudnn_version(91002) == "9.10.2" and cudnn_version(None) is None


def test_a_gpu_job_checks_the_install_before_it_trains_with_faulthandler_on_from_the_start(
    tmp_path, small_toy, monkeypatch
):
    """A training job that asks for a GPU runs `eqlv2 doctor --require-gpu` first; on an install that
    cannot use one (here: no GPU at all) the job fails with the doctor's line in its log, and training never
    starts.  Every Python process of the job has faulthandler on before its first import
    (PYTHONFAULTHANDLER=1 from the workflow), so a native crash anywhere leaves its stack in the log."""
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "toy").symlink_to(small_toy)  # make_toy's outputs, already there
    site, seen = tmp_path / "site", tmp_path / "faulthandler"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import faulthandler, sys\n"
        f"open({str(seen)!r}, 'a').write(f'{{faulthandler.is_enabled()}} {{sys.orig_argv}}\\n')\n"
    )
    train = {**SMALL_CONFIG["resources"]["train"], "gpus": 1}
    baseline = {"baseline": SMALL_CONFIG["methods"]["baseline"]}
    configfile = write_config(tmp_path, resources={**SMALL_CONFIG["resources"], "train": train},
                              methods=baseline, openimages=None)  # fmt: skip
    monkeypatch.setenv("PYTHONPATH", str(site))
    result = run_snakemake(tmp_path, configfile, "--cores", "1", "results/toy/baseline/model_final.pth",
                           check=False)  # fmt: skip
    assert result.returncode != 0
    log = (tmp_path / "logs/toy/baseline/train.log").read_text().splitlines()
    assert "GPUs: none visible to torch" in log
    assert log[-1].startswith("eqlv2 doctor: error: no GPU is visible to torch ")
    assert not (tmp_path / "results/toy/baseline/train").exists()  # `eqlv2 train` never ran
    processes = [line.split(" ", 1) for line in seen.read_text().splitlines()]
    doctor = [enabled for enabled, argv in processes if "'doctor'" in argv]
    assert doctor == ["True"], processes  # the job's doctor; its probe child has -X faulthandler
    assert any("eqlv2.probes" in argv for _, argv in processes)


def test_a_crash_in_native_code_prints_the_python_stack_that_led_to_it():
    # On an H200 (gVisor, torch 2.11.0+cu130), `eqlv2 doctor` died of SIGSEGV with nothing but the
    # shell's "Segmentation fault": every verb leaves the Python stack of such a crash in its log.
    crash = (
        "import ctypes, eqlv2.tools.doctor as verb\n"
        "verb.gather_facts = lambda runner: ctypes.string_at(0)  # reads address 0, like a broken library\n"
        "from eqlv2.cli import main\n"
        "main(['doctor'])\n"
    )
    result = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True)
    assert result.returncode == -11
    assert "Fatal Python error: Segmentation fault" in result.stderr
    assert "eqlv2/tools/doctor.py" in result.stderr and "eqlv2/cli.py" in result.stderr
