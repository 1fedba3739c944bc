"""`eqlv2 doctor`: the real report on this CPU-only machine, and its judgement of cards it does not have."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from eqlv2.cli import main
from eqlv2.doctor import Facts, Gpu, diagnose

from .workflow_helpers import SMALL_CONFIG, run_snakemake, write_config

CPU_ONLY = Facts(
    torch="2.13.0+cpu", cuda=None, cudnn=None, nccl=None, torch_archs=[], mmcv="2.1.0", mmdet="3.3.0",
    mmengine="0.10.7", mmcv_ext="/site-packages/mmcv/_ext.so", mmcv_cuda=None, mmcv_archs=[], gpus=[],
)  # fmt: skip
H200 = Gpu(0, "NVIDIA H200", (9, 0))
B200 = Gpu(0, "NVIDIA B200", (10, 0))


def _cuda_build(mmcv_archs: list[str], gpus: list[Gpu], mmcv_cuda: str = "13.0") -> Facts:
    return dataclasses.replace(CPU_ONLY, torch="2.13.0", cuda="13.0", cudnn="9.13.0", nccl="2.27.7",
                               mmcv_cuda=mmcv_cuda, mmcv_archs=mmcv_archs, gpus=gpus)  # fmt: skip


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
    assert lines[-1] == "doctor: ok"


def test_json_report_and_require_gpu_fail_with_one_line(capsys):
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == [] and report["gpus"] == []
    assert report["mmcv"] == "2.1.0" and report["mmcv_cuda"] is None and report["mmcv_archs"] == []

    assert main(["doctor", "--require-gpu"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("eqlv2 doctor: error: no GPU is visible to torch ")


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
    problems = diagnose(facts)
    if verdict is None:
        assert problems == []
    else:
        assert len(problems) == 1 and verdict in problems[0], problems
        assert "rebuild mmcv" in problems[0]


def test_a_gpu_job_that_sees_no_gpu_is_refused():
    refused = diagnose(CPU_ONLY, require_gpu=True)
    assert refused == ["no GPU is visible to torch 2.13.0+cpu (it is a CPU build)"]
    cuda_torch_no_gpu = _cuda_build(["sm_80", "sm_90"], [])
    assert diagnose(cuda_torch_no_gpu) == []
    assert "check the job's GPU request" in diagnose(cuda_torch_no_gpu, require_gpu=True)[0]


def test_a_gpu_job_checks_the_install_before_it_trains(tmp_path, small_toy):
    """A training job that asks for a GPU runs `eqlv2 doctor --require-gpu` first; on an install that
    cannot use one (here: no GPU at all) the job fails with the doctor's line in its log, and training never
    starts."""
    (tmp_path / "resources").mkdir()
    (tmp_path / "resources" / "toy").symlink_to(small_toy)  # make_toy's outputs, already there
    train = {**SMALL_CONFIG["resources"]["train"], "gpus": 1}
    baseline = {"baseline": SMALL_CONFIG["methods"]["baseline"]}
    configfile = write_config(tmp_path, resources={**SMALL_CONFIG["resources"], "train": train},
                              methods=baseline, openimages=None)  # fmt: skip
    result = run_snakemake(tmp_path, configfile, "--cores", "1", "results/toy/baseline/model_final.pth",
                           check=False)  # fmt: skip
    assert result.returncode != 0
    log = (tmp_path / "logs/toy/baseline/train.log").read_text().splitlines()
    assert "GPUs: none visible to torch" in log
    assert log[-1].startswith("eqlv2 doctor: error: no GPU is visible to torch ")
    assert not (tmp_path / "results/toy/baseline/train").exists()  # `eqlv2 train` never ran


def test_a_crash_in_native_code_prints_the_python_stack_that_led_to_it():
    # On an H200 (gVisor, torch 2.11.0+cu130), `eqlv2 doctor` died of SIGSEGV with nothing but the
    # shell's "Segmentation fault": every verb now leaves the Python stack of such a crash in its log.
    crash = (
        "import ctypes, eqlv2.tools.doctor as verb\n"
        "verb.gather_facts = lambda: ctypes.string_at(0)  # reads address 0, as a broken library would\n"
        "from eqlv2.cli import main\n"
        "main(['doctor'])\n"
    )
    result = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True)
    assert result.returncode == -11
    assert "Fatal Python error: Segmentation fault" in result.stderr
    assert "eqlv2/tools/doctor.py" in result.stderr and "eqlv2/cli.py" in result.stderr
