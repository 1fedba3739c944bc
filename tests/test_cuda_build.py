"""The set-up's CUDA build environment (src/eqlv2/cuda_build.py), decided before mmcv's long compile.

A CPU torch changes nothing; a CUDA torch gets FORCE_CUDA, an architecture list and a CUDA_HOME, from the
system toolkit or from NVIDIA's one-folder PyPI toolkit reached through links; an nvcc of another CUDA
major than torch's is refused in one line.  The toolkit layouts are real folders built in tmp_path; the
nvcc that runs is this machine's (/usr/local/bin/nvcc, CUDA 13.0) or a link to it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eqlv2.cuda_arch import runs_on
from eqlv2.cuda_build import (
    DEFAULT_ARCH_LIST,
    CudaBuildError,
    Toolkit,
    build_env,
    check_versions_match,
    link_cuda_home,
    nvcc_version,
)

from .conftest import REPO

SYSTEM_TOOLKIT = Path("/usr/local/cuda")  # this machine's CUDA 13.0 toolkit (no GPU)
SYSTEM_NVCC = SYSTEM_TOOLKIT / "bin" / "nvcc"
NO_TOOLKIT = Path("/nonexistent/cuda")
needs_nvcc = pytest.mark.skipif(not SYSTEM_NVCC.is_file(), reason="this machine's CUDA 13 nvcc runs the case")

NVCC_13 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2025 NVIDIA Corporation
Built on Wed_Aug_20_01:58:59_PM_PDT_2025
Cuda compilation tools, release 13.0, V13.0.88
Build cuda_13.0.r13.0/compiler.36424714_0
"""


def test_the_cuda_release_is_read_from_nvcc_version():
    assert nvcc_version(NVCC_13) == (13, 0)
    assert nvcc_version("Cuda compilation tools, release 12.6, V12.6.85") == (12, 6)
    with pytest.raises(CudaBuildError, match="cannot read the CUDA release"):
        nvcc_version("command not found")


def test_the_default_architectures_cover_a100_h100_h200_and_newer_cards_through_ptx():
    archs = []
    for entry in DEFAULT_ARCH_LIST.split(";"):
        capability = entry.removesuffix("+PTX")
        major, minor = (int(x) for x in capability.split("."))
        archs.append(f"sm_{major}{minor}")
        if entry.endswith("+PTX"):
            archs.append(f"compute_{major}{minor}")
    assert all(int(a.split("_")[1]) >= 75 for a in archs)  # nvcc 13 refuses anything older
    for card, capability in (
        ("A100", (8, 0)),
        ("H100/H200", (9, 0)),
        ("B200", (10, 0)),
        ("RTX 5090", (12, 0)),
    ):
        assert any(runs_on(a, capability) for a in archs), card
    assert not any(runs_on(a, (7, 0)) for a in archs)  # V100 is not covered (nor buildable by nvcc 13)


def test_a_cpu_torch_changes_nothing(tmp_path):
    assert build_env(None, {"PATH": "/usr/bin"}, tmp_path, tmp_path / "cuda-home") == {}
    assert not (tmp_path / "cuda-home").exists()


def test_on_this_machine_the_set_up_takes_the_cpu_path():
    """What `make setup` runs here: the CPU torch of this machine, so mmcv gets its CPU operators."""
    result = subprocess.run(
        [sys.executable, str(REPO / "src/eqlv2/cuda_build.py"), "env"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert torch.version.cuda is None
    assert result.stdout == f"# torch {torch.__version__} (CPU): mmcv compiles CPU operators\n"


@needs_nvcc
def test_a_cuda_torch_with_the_system_toolkit_forces_cuda_for_the_default_architectures(tmp_path):
    variables = build_env("13.0", {"PATH": str(SYSTEM_NVCC.parent)}, tmp_path, tmp_path / "home")
    assert variables == {
        "FORCE_CUDA": "1",
        "TORCH_CUDA_ARCH_LIST": DEFAULT_ARCH_LIST,
        "CUDA_HOME": str(SYSTEM_NVCC.resolve().parent.parent),
    }


@needs_nvcc
def test_the_users_architecture_list_is_kept(tmp_path):
    env = {"PATH": str(SYSTEM_NVCC.parent), "TORCH_CUDA_ARCH_LIST": "9.0;10.0;12.0+PTX"}
    assert build_env("13.0", env, tmp_path, tmp_path / "home")["TORCH_CUDA_ARCH_LIST"] == "9.0;10.0;12.0+PTX"


@needs_nvcc
def test_an_nvcc_of_another_cuda_major_is_refused_before_the_compile(tmp_path):
    with pytest.raises(CudaBuildError) as err:
        build_env("12.6", {"PATH": str(SYSTEM_NVCC.parent)}, tmp_path, tmp_path / "home")
    nvcc = SYSTEM_NVCC.resolve()
    assert str(err.value) == (
        f"nvcc {nvcc} is CUDA 13.0 (nvcc on PATH) but torch is built for CUDA 12.6; use a torch built for "
        "CUDA 13 (make setup TORCH_INDEX_URL=...) or set CUDA_HOME to a CUDA 12 toolkit"
    )


def test_the_refusal_names_both_versions():
    toolkit = Toolkit(Path("/opt/cuda-12.4/bin/nvcc"), Path("/opt/cuda-12.4"), (12, 4), "CUDA_HOME")
    check_versions_match(toolkit, "12.8")  # same major: torch accepts it
    with pytest.raises(
        CudaBuildError, match=r"is CUDA 12\.4 \(CUDA_HOME\) but torch is built for CUDA 13\.0"
    ):
        check_versions_match(toolkit, "13.0")


def test_a_cuda_home_without_nvcc_is_one_line(tmp_path):
    with pytest.raises(CudaBuildError, match=f"CUDA_HOME={tmp_path} has no bin/nvcc"):
        build_env("13.0", {"CUDA_HOME": str(tmp_path), "PATH": ""}, tmp_path, tmp_path / "home")


def _pypi_layout(site_packages: Path, nvcc: Path) -> Path:
    """The folder `pip install cuda-toolkit[nvcc,cccl]==13.0.*` makes: nvidia/cu13/{bin,include,lib,nvvm}."""
    folder = site_packages / "nvidia" / "cu13"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "nvcc").symlink_to(nvcc)
    (folder / "include").mkdir()
    (folder / "include" / "cuda_runtime.h").write_text("/* header */\n")
    (folder / "nvvm").mkdir()
    (folder / "lib").mkdir()
    (folder / "lib" / "libcudart.so.13").write_bytes(b"\x7fELF")
    (folder / "lib" / "libnvrtc.so.13").write_bytes(b"\x7fELF")
    return folder


def test_a_pypi_toolkit_is_reached_through_links_with_the_missing_libcudart(tmp_path):
    nvcc = tmp_path / "real-nvcc"
    nvcc.write_text("#!/bin/sh\n")
    folder = _pypi_layout(tmp_path / "site-packages", nvcc)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    home = link_cuda_home(folder, tmp_path / "venv" / "cuda-home", 13)
    assert (home / "bin").resolve() == folder / "bin" and (home / "include" / "cuda_runtime.h").is_file()
    assert (home / "lib64" / "libcudart.so").resolve() == folder / "lib" / "libcudart.so.13"
    assert (home / "lib64" / "libnvrtc.so.13").resolve() == folder / "lib" / "libnvrtc.so.13"
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # the package is untouched
    link_cuda_home(folder, home, 13)  # a rerun rebuilds the links
    assert (home / "lib64" / "libcudart.so").is_symlink()


def test_a_folder_that_is_no_toolkit_is_refused(tmp_path):
    (tmp_path / "cu13" / "bin").mkdir(parents=True)
    refusal = r"is not a CUDA 13 toolkit \(no bin/nvcc or lib/libcudart.so.13\)"
    with pytest.raises(CudaBuildError, match=refusal):
        link_cuda_home(tmp_path / "cu13", tmp_path / "home", 13)


@needs_nvcc
def test_without_a_system_toolkit_the_pypi_toolkit_of_torchs_cuda_major_is_used(tmp_path):
    site_packages = tmp_path / "site-packages"
    _pypi_layout(site_packages, SYSTEM_NVCC.resolve())
    variables = build_env(
        "13.0", {"PATH": ""}, site_packages, tmp_path / "cuda-home", install=False, system_default=NO_TOOLKIT
    )
    assert variables["CUDA_HOME"] == str(tmp_path / "cuda-home") and variables["FORCE_CUDA"] == "1"
    assert (tmp_path / "cuda-home" / "lib64" / "libcudart.so").is_symlink()


def test_without_any_toolkit_for_cuda_12_the_message_says_what_to_load(tmp_path):
    with pytest.raises(CudaBuildError, match="load the cluster's CUDA 12 module or set CUDA_HOME"):
        build_env("12.6", {"PATH": ""}, tmp_path, tmp_path / "home", install=False, system_default=NO_TOOLKIT)


def test_an_nvcc_wrapper_outside_a_toolkit_folder_is_passed_over(tmp_path):
    """A script on PATH that execs the real nvcc (as /usr/local/bin/nvcc here) is no CUDA_HOME."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "nvcc").write_text('#!/bin/sh\nexec /somewhere/nvcc "$@"\n')
    (tmp_path / "bin" / "nvcc").chmod(0o755)
    with pytest.raises(CudaBuildError, match="no CUDA toolkit found"):
        build_env("12.6", {"PATH": str(tmp_path / "bin")}, tmp_path, tmp_path / "home", install=False,
                  system_default=NO_TOOLKIT)  # fmt: skip


def test_cuda_check_compiles_like_mmcvs_setup_for_a100_and_h100(tmp_path):
    """The nvcc line `make cuda-check` runs: mmcv's CUDA define, C++17, machine code for sm_80 and sm_90;
    the bindings (.cpp) go to the host compiler.  (The check itself runs in CI, after the tests.)"""
    from eqlv2.cuda_build import CHECK_SOURCES, compile_command

    csrc, include, home = tmp_path / "csrc", tmp_path / "torch/include", tmp_path / "cuda-home"
    cu = compile_command(csrc / "pytorch/cuda/nms_cuda.cu", tmp_path / "o", csrc, include, home)
    assert cu[0] == str(home / "bin/nvcc")
    assert "-gencode=arch=compute_80,code=sm_80" in cu and "-gencode=arch=compute_90,code=sm_90" in cu
    assert {"-DMMCV_WITH_CUDA", "-std=c++17", f"-I{csrc / 'common/cuda'}", f"-I{include}"} <= set(cu)
    host = compile_command(csrc / "pytorch/cuda/cudabind.cpp", tmp_path / "o", csrc, include, home)
    assert host[0] == "c++" and not any(flag.startswith("-gencode") for flag in host)
    assert {"pytorch/cuda/roi_align_cuda.cu", "pytorch/cuda/nms_cuda.cu"} <= set(CHECK_SOURCES)
