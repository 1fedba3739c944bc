"""The environment in which mmcv 2.1.0 compiles its CUDA operators, decided before the long compile.

``make setup`` runs this file (``python src/eqlv2/cuda_build.py env``) between installing torch and building
mmcv, before eqlv2 itself is installed, so it uses only the standard library and torch.  With a CPU torch
(these development machines) it changes nothing: mmcv gets its CPU operators.  With a CUDA torch it makes
the build work on a login node without a GPU, where mmcv would otherwise quietly build CPU operators only
(its ``setup.py`` compiles CUDA code only when a GPU is visible or ``FORCE_CUDA=1``) and torch's extension
builder would find no architecture to compile for:

* ``FORCE_CUDA=1``;
* ``TORCH_CUDA_ARCH_LIST``: the user's, or :data:`DEFAULT_ARCH_LIST` (A100 and H100/H200 in machine code,
  newer cards through compute_90 PTX, which the driver compiles on first use);
* ``CUDA_HOME``: the user's, else the system toolkit (``nvcc`` on ``PATH``, ``/usr/local/cuda``), else
  NVIDIA's PyPI toolkit of torch's CUDA major (``cuda-toolkit[nvcc,cccl]``, one ``nvidia/cu13/`` folder),
  installed into the venv and reached through a folder of links, since torch's ``_find_cuda_home`` does
  not look there and the folder lacks the ``lib64/libcudart.so`` that the link step asks for;
* a one-line refusal when nvcc's CUDA major differs from torch's (torch would refuse it too, but only
  after pip has started the build).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

#: Compute capabilities compiled by default: 8.0 (A100), 9.0 (H100, H200) and compute_90 PTX for newer
#: cards (Blackwell's 10.0 and 12.0 JIT-compile it on first use; add them to the list to skip that).
#: nvcc 13 no longer accepts capabilities below 7.5.
DEFAULT_ARCH_LIST = "8.0;9.0+PTX"

#: NVIDIA's PyPI toolkit for each CUDA major whose wheels install into one folder.
PYPI_TOOLKIT = {13: "cuda-toolkit[nvcc,cccl]==13.0.*"}

_RELEASE = re.compile(r"release (\d+)\.(\d+)")


class CudaBuildError(RuntimeError):
    """The CUDA build cannot work as configured; the message says what to change."""


@dataclass(frozen=True)
class Toolkit:
    """A CUDA toolkit: where ``nvcc`` is, what ``CUDA_HOME`` should be, and nvcc's (major, minor)."""

    nvcc: Path
    cuda_home: Path
    version: tuple[int, int]
    source: str


def nvcc_version(text: str) -> tuple[int, int]:
    """(major, minor) from ``nvcc --version`` output (``Cuda compilation tools, release 13.0, V13.0.88``)."""
    match = _RELEASE.search(text)
    if not match:
        raise CudaBuildError(f"cannot read the CUDA release from nvcc --version: {text.strip()[-200:]!r}")
    return int(match.group(1)), int(match.group(2))


def run_nvcc_version(nvcc: Path) -> tuple[int, int]:
    result = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise CudaBuildError(f"{nvcc} --version failed: {result.stderr.strip()[-200:]}")
    return nvcc_version(result.stdout)


def torch_cuda_major(torch_cuda: str) -> int:
    """The major of ``torch.version.cuda`` (``"13.0"`` -> 13)."""
    return int(torch_cuda.split(".")[0])


def check_versions_match(toolkit: Toolkit, torch_cuda: str) -> None:
    """Refuse an nvcc whose CUDA major is not torch's: torch will not build an extension with it."""
    if toolkit.version[0] != torch_cuda_major(torch_cuda):
        raise CudaBuildError(
            f"nvcc {toolkit.nvcc} is CUDA {toolkit.version[0]}.{toolkit.version[1]} ({toolkit.source}) but "
            f"torch is built for CUDA {torch_cuda}; use a torch built for CUDA {toolkit.version[0]} "
            f"(make setup TORCH_INDEX_URL=...) or set CUDA_HOME to a CUDA {torch_cuda_major(torch_cuda)} "
            "toolkit"
        )


def pypi_toolkit_folder(site_packages: Path, major: int) -> Path:
    """Where NVIDIA's one-folder PyPI toolkit of CUDA ``major`` installs (``nvidia/cu13``)."""
    return site_packages / "nvidia" / f"cu{major}"


def link_cuda_home(folder: Path, out: Path, major: int) -> Path:
    """A ``CUDA_HOME`` of links into a PyPI toolkit folder, with the ``lib64/libcudart.so`` it lacks.

    Nothing under ``folder`` (an installed package) is modified; ``out`` is rebuilt from scratch.
    """
    cudart = folder / "lib" / f"libcudart.so.{major}"
    if not (folder / "bin" / "nvcc").is_file() or not cudart.is_file():
        raise CudaBuildError(f"{folder} is not a CUDA {major} toolkit (no bin/nvcc or lib/{cudart.name})")
    if out.exists() or out.is_symlink():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in ("bin", "include", "nvvm"):
        if (folder / name).exists():
            (out / name).symlink_to(folder / name)
    lib64 = out / "lib64"
    lib64.mkdir()
    for entry in sorted((folder / "lib").iterdir()):
        (lib64 / entry.name).symlink_to(entry)
    if not (lib64 / "libcudart.so").exists():
        (lib64 / "libcudart.so").symlink_to(cudart)
    return out


def _is_toolkit(home: Path) -> bool:
    return (home / "bin" / "nvcc").is_file() and (home / "include" / "cuda_runtime.h").is_file()


def find_system_toolkit(env: dict[str, str], default: Path = Path("/usr/local/cuda")) -> Toolkit | None:
    """The toolkit named by ``CUDA_HOME``, else the one of the ``nvcc`` on ``PATH`` (a cluster's CUDA
    module), else ``default``.  An ``nvcc`` on ``PATH`` outside a toolkit folder (a wrapper script) is
    passed over, since ``CUDA_HOME`` must hold the headers and libraries too."""
    if env.get("CUDA_HOME"):
        home = Path(env["CUDA_HOME"])
        if not (home / "bin" / "nvcc").is_file():
            raise CudaBuildError(f"CUDA_HOME={home} has no bin/nvcc")
        return Toolkit(home / "bin" / "nvcc", home, run_nvcc_version(home / "bin" / "nvcc"), "CUDA_HOME")
    on_path = shutil.which("nvcc", path=env.get("PATH", ""))
    if on_path and _is_toolkit(Path(on_path).resolve().parent.parent):
        nvcc = Path(on_path).resolve()
        return Toolkit(nvcc, nvcc.parent.parent, run_nvcc_version(nvcc), "nvcc on PATH")
    if _is_toolkit(default):
        nvcc = default / "bin" / "nvcc"
        return Toolkit(nvcc, default, run_nvcc_version(nvcc), str(default))
    return None


def pypi_toolkit(site_packages: Path, major: int, cuda_home: Path, install: bool) -> Toolkit:
    """NVIDIA's PyPI toolkit of CUDA ``major`` in this environment (installed first if ``install``)."""
    if major not in PYPI_TOOLKIT:
        raise CudaBuildError(
            f"no CUDA toolkit found (CUDA_HOME, nvcc on PATH, /usr/local/cuda) and no one-folder PyPI "
            f"toolkit for CUDA {major}: load the cluster's CUDA {major} module or set CUDA_HOME"
        )
    folder = pypi_toolkit_folder(site_packages, major)
    if not (folder / "bin" / "nvcc").is_file() and install:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", PYPI_TOOLKIT[major]], check=True)
    home = link_cuda_home(folder, cuda_home, major)
    return Toolkit(home / "bin" / "nvcc", home, run_nvcc_version(home / "bin" / "nvcc"), PYPI_TOOLKIT[major])


def build_env(
    torch_cuda: str | None,
    env: dict[str, str],
    site_packages: Path,
    cuda_home: Path,
    install: bool = True,
    system_default: Path = Path("/usr/local/cuda"),
) -> dict[str, str]:
    """The variables mmcv's build needs; empty for a CPU torch (mmcv then builds its CPU operators).

    ``cuda_home`` is where a PyPI toolkit's links go; ``install`` lets it be pip-installed when missing.
    """
    if torch_cuda is None:
        return {}
    major = torch_cuda_major(torch_cuda)
    toolkit = find_system_toolkit(env, system_default) or pypi_toolkit(
        site_packages, major, cuda_home, install
    )
    check_versions_match(toolkit, torch_cuda)
    return {
        "FORCE_CUDA": "1",
        "TORCH_CUDA_ARCH_LIST": env.get("TORCH_CUDA_ARCH_LIST") or DEFAULT_ARCH_LIST,
        "CUDA_HOME": str(toolkit.cuda_home),
    }


# --- make cuda-check: compile (only) the CUDA sources the detectors need, on a machine without a GPU ---

#: mmcv 2.1.0's CUDA sources behind Mask R-CNN / Faster R-CNN on a GPU: RoIAlign forward and backward,
#: nms (batched_nms), and the launcher bindings that call them (host code, compiled with the C++ compiler).
CHECK_SOURCES = ("pytorch/cuda/roi_align_cuda.cu", "pytorch/cuda/nms_cuda.cu", "pytorch/cuda/cudabind.cpp")
CHECK_ARCHS = ("8.0", "9.0")
#: What the check downloads from PyPI, pinned: the CUDA build of the project's torch (its headers), the
#: toolkit of its CUDA major (nvcc, and the cuBLAS/cuSPARSE/cuSOLVER headers ATen's CUDA headers include),
#: and mmcv's source.
CHECK_TORCH = "torch==2.13.0"
CHECK_TOOLKIT = "cuda-toolkit[nvcc,cccl,cublas,cusparse,cusolver]==13.0.*"
CHECK_MMCV = "mmcv==2.1.0"
PYPI = "https://pypi.org/simple"


def _pip(*args: str) -> None:
    """pip from PyPI itself (``--isolated``: no local find-links or constraint may swap in a CPU torch)."""
    subprocess.run(
        [sys.executable, "-m", "pip", *args, "--isolated", "--index-url", PYPI, "--quiet"], check=True
    )


def _torch_headers(work: Path) -> Path:
    """torch's include folder from its CUDA wheel (the CPU wheel has no c10/cuda headers)."""
    include = work / "torch-cuda" / "torch" / "include"
    if (include / "c10" / "cuda").is_dir():
        return include
    wheels = work / "wheels"
    _pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
         "--platform", "manylinux_2_28_x86_64", "--dest", str(wheels), CHECK_TORCH)  # fmt: skip
    import zipfile

    (wheel,) = sorted(wheels.glob("torch-2.13.0-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if n.startswith("torch/include/")]
        archive.extractall(work / "torch-cuda", members=members)
    if not (include / "c10" / "cuda").is_dir():
        raise CudaBuildError(f"{wheel.name} has no c10/cuda headers: not a CUDA build of torch")
    return include


def _mmcv_sources(work: Path) -> Path:
    csrc = work / "mmcv-2.1.0" / "mmcv" / "ops" / "csrc"
    if csrc.is_dir():
        return csrc
    # pip reads mmcv's metadata from its setup.py, which imports torch: the project's, not isolated.
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
               "--no-build-isolation", "--dest", str(work / "sdist"), CHECK_MMCV]  # fmt: skip
    subprocess.run(command, check=True)
    import tarfile

    with tarfile.open(work / "sdist" / "mmcv-2.1.0.tar.gz") as archive:
        archive.extractall(work, filter="data")
    return csrc


def compile_command(source: Path, out: Path, csrc: Path, torch_include: Path, cuda_home: Path) -> list[str]:
    """The compile of one mmcv source as torch's extension builder runs it for mmcv's setup.py."""
    python_include = sysconfig.get_paths()["include"]
    api = torch_include / "torch" / "csrc" / "api" / "include"
    includes = [csrc / "pytorch", csrc / "common", csrc / "common" / "cuda", torch_include, api,
                cuda_home / "include", python_include]  # fmt: skip
    flags = [f"-I{path}" for path in includes] + [
        "-DMMCV_WITH_CUDA", "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_ext",
        "-D_GLIBCXX_USE_CXX11_ABI=1", "-std=c++17", "-c", str(source), "-o", str(out),
    ]  # fmt: skip
    if source.suffix != ".cu":
        return ["c++", "-fPIC", "-w", *flags]
    gencode = [
        f"-gencode=arch=compute_{a.replace('.', '')},code=sm_{a.replace('.', '')}" for a in CHECK_ARCHS
    ]
    nvcc_flags = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
                  "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
                  "--expt-relaxed-constexpr", "--compiler-options", "-fPIC", "-w"]  # fmt: skip
    return [str(cuda_home / "bin" / "nvcc"), *nvcc_flags, *gencode, *flags]


def cuda_check(work: Path) -> list[str]:
    """Compile :data:`CHECK_SOURCES` for :data:`CHECK_ARCHS`; return the architectures found in the objects.

    Downloads are kept in ``work``, so a rerun only compiles.
    """
    from eqlv2.cuda_arch import fatbin_architectures

    work.mkdir(parents=True, exist_ok=True)
    torch_include = _torch_headers(work)
    toolkit = pypi_toolkit_folder(work / "toolkit", 13)
    if not (toolkit / "bin" / "nvcc").is_file():
        _pip("install", "--target", str(work / "toolkit"), CHECK_TOOLKIT)
    cuda_home = link_cuda_home(toolkit, work / "cuda-home", 13)
    print(f"nvcc: CUDA {'.'.join(map(str, run_nvcc_version(cuda_home / 'bin' / 'nvcc')))} ({CHECK_TOOLKIT})")
    csrc = _mmcv_sources(work)
    found: set[str] = set()
    for name in CHECK_SOURCES:
        source, out = csrc / name, work / "objects" / (Path(name).name + ".o")
        out.parent.mkdir(exist_ok=True)
        started = time.monotonic()
        result = subprocess.run(compile_command(source, out, csrc, torch_include, cuda_home),
                                capture_output=True, text=True)  # fmt: skip
        if result.returncode != 0:
            raise CudaBuildError(f"{name} did not compile: {result.stderr.strip()[-1500:]}")
        archs = fatbin_architectures(out) if source.suffix == ".cu" else []
        found.update(archs)
        kind = " ".join(archs) if archs else "host code"
        print(f"{name}: {kind} ({time.monotonic() - started:.0f} s)")
    wanted = [f"sm_{a.replace('.', '')}" for a in CHECK_ARCHS]
    missing = [a for a in wanted if a not in found]
    if missing:
        raise CudaBuildError(f"the objects lack {' '.join(missing)} (found: {' '.join(sorted(found))})")
    return sorted(found)


def _shell(variables: dict[str, str]) -> str:
    return "".join(f"export {key}='{value}'\n" for key, value in variables.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cuda_build.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    env_parser = sub.add_parser("env", help="print the shell assignments for mmcv's build")
    env_parser.add_argument("--cuda-home", default=".venv/cuda-home", help="where to link a PyPI toolkit")
    check_parser = sub.add_parser(
        "check", help="compile mmcv's RoIAlign and nms CUDA sources (no GPU needed)"
    )
    check_parser.add_argument("--work", default=".cuda-check", help="downloads and objects (kept for reruns)")
    args = parser.parse_args(argv)
    if args.command == "check":
        try:
            archs = cuda_check(Path(args.work).absolute())
        except (CudaBuildError, subprocess.CalledProcessError) as err:
            print(f"cuda-check: error: {err}", file=sys.stderr)
            return 1
        print(f"compiled for {' '.join(archs)}")
        return 0
    import torch  # the torch of the environment being set up

    site_packages = Path(sysconfig.get_paths()["purelib"])
    try:
        variables = build_env(
            torch.version.cuda, dict(os.environ), site_packages, Path(args.cuda_home).absolute()
        )
    except CudaBuildError as err:
        print(f"cuda_build: error: {err}", file=sys.stderr)
        return 1
    kind = f"CUDA {torch.version.cuda}" if variables else "CPU"
    print(f"# torch {torch.__version__} ({kind}): "
          f"{'mmcv compiles CUDA operators' if variables else 'mmcv compiles CPU operators'}")  # fmt: skip
    print(_shell(variables), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
