"""What ``eqlv2 doctor`` checks: that this install can run on the GPUs the job sees.

The failure it exists for: mmcv built on a node without a GPU (or without ``FORCE_CUDA=1``) has
CPU-only operators, and built for one card only it lacks the machine code of another; either way a
GPU job dies at its first ``nms``/``RoIAlign`` call ("nms_impl: implementation for device cuda:0 not
found", "no kernel image is available"), after the queue wait and the data loading.  The facts are
gathered once (:func:`gather_facts`) and judged by a pure function (:func:`diagnose`), so the
judgement is tested with constructed facts for cards this machine does not have.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json

from eqlv2.cuda_arch import fatbin_architectures, runs_on

REBUILD_HINT = "rebuild mmcv with FORCE_CUDA=1 and TORCH_CUDA_ARCH_LIST naming this card (see the README)"


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
class Facts:
    """What is installed and what is visible.  ``None`` means "not there" (a CPU build has no CUDA)."""

    torch: str
    cuda: str | None  # torch.version.cuda
    cudnn: str | None
    nccl: str | None
    torch_archs: list[str]  # what torch's own kernels were built for
    mmcv: str
    mmdet: str
    mmengine: str
    mmcv_ext: str | None  # the compiled operators' library
    mmcv_cuda: str | None  # the CUDA version mmcv's operators were compiled with; None: CPU-only
    mmcv_archs: list[str]  # read from the library's .nv_fatbin
    gpus: list[Gpu]


def _cudnn_version(number: int | None) -> str | None:
    """torch reports cuDNN as one integer: 8.9.7 is 8907, 9.10.2 is 91002."""
    if number is None:
        return None
    major, rest = (number // 10000, number % 10000) if number >= 10000 else (number // 1000, number % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def gather_facts() -> Facts:
    """Read versions, mmcv's build and the visible GPUs from the running interpreter's packages."""
    import mmcv
    import mmdet
    import mmengine
    import torch
    from mmcv.ops import get_compiling_cuda_version

    nccl = None
    if torch.distributed.is_available() and torch.distributed.is_nccl_available():
        version = torch.cuda.nccl.version()
        nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
    spec = importlib.util.find_spec("mmcv._ext")
    ext = spec.origin if spec is not None else None
    compiled_with = get_compiling_cuda_version() if ext is not None else "not available"
    gpus = [
        Gpu(i, torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i)))
        for i in range(torch.cuda.device_count())
    ]
    return Facts(
        torch=torch.__version__,
        cuda=torch.version.cuda,
        cudnn=_cudnn_version(torch.backends.cudnn.version()),
        nccl=nccl,
        torch_archs=list(torch.cuda.get_arch_list()),
        mmcv=mmcv.__version__,
        mmdet=mmdet.__version__,
        mmengine=mmengine.__version__,
        mmcv_ext=ext,
        mmcv_cuda=None if compiled_with == "not available" else compiled_with,
        mmcv_archs=fatbin_architectures(ext) if ext is not None else [],
        gpus=gpus,
    )


def diagnose(facts: Facts, require_gpu: bool = False) -> list[str]:
    """Every reason the install cannot run on the visible GPUs, one sentence each; empty if it can.

    With no GPU visible there is nothing to check (CPU runs need only CPU operators), unless
    ``require_gpu``: a GPU job that sees none was given no GPU or has a CPU build of torch.
    """
    problems = []
    if facts.mmcv_cuda and facts.cuda and facts.mmcv_cuda.split(".")[0] != facts.cuda.split(".")[0]:
        problems.append(
            f"mmcv's operators were compiled with CUDA {facts.mmcv_cuda} but torch {facts.torch} uses "
            f"CUDA {facts.cuda}: rebuild mmcv against this torch"
        )
    if not facts.gpus:
        if require_gpu:
            why = "it is a CPU build" if facts.cuda is None else "check the job's GPU request and the driver"
            problems.append(f"no GPU is visible to torch {facts.torch} ({why})")
        return problems
    if facts.mmcv_cuda is None:
        problems.append(
            f"{facts.gpus[0].describe()} is visible but mmcv's operators were compiled without CUDA "
            f"({facts.mmcv_ext or 'no mmcv._ext'}): {REBUILD_HINT}"
        )
        return problems
    built = " ".join(facts.mmcv_archs) or "no architecture"
    for gpu in {(g.name, g.capability): g for g in facts.gpus}.values():  # one line per kind of card
        if not any(runs_on(arch, gpu.capability) for arch in facts.mmcv_archs):
            problems.append(f"mmcv's CUDA operators are built for {built}, none of which runs on "
                            f"{gpu.describe()}: {REBUILD_HINT}")  # fmt: skip
    return problems


def render_text(facts: Facts, problems: list[str]) -> str:
    """The report, one fact per line; the problems themselves are reported by the caller."""

    def absent(value: str | None, why: str = "not available") -> str:
        return value if value is not None else why

    if facts.mmcv_cuda is not None:
        ops = f"compiled with CUDA {facts.mmcv_cuda} ({facts.mmcv_ext})"
    elif facts.mmcv_ext is not None:
        ops = f"CPU-only, compiled without CUDA ({facts.mmcv_ext})"
    else:
        ops = "missing (mmcv has no compiled operators, mmcv._ext)"
    lines = [
        f"torch: {facts.torch}",
        f"CUDA (torch.version.cuda): {absent(facts.cuda, 'none, torch is a CPU build')}",
        f"cuDNN: {absent(facts.cudnn)}",
        f"NCCL: {absent(facts.nccl)}",
        f"torch CUDA architectures: {' '.join(facts.torch_archs) or 'none'}",
        f"mmcv: {facts.mmcv}",
        f"mmdet: {facts.mmdet}",
        f"mmengine: {facts.mmengine}",
        f"mmcv operators: {ops}",
        f"mmcv CUDA architectures: {' '.join(facts.mmcv_archs) or 'none'}",
    ]
    if facts.gpus:
        lines += [gpu.describe() for gpu in facts.gpus]
    else:
        lines.append("GPUs: none visible to torch")
    lines.append(f"doctor: {len(problems)} problem(s)" if problems else "doctor: ok")
    return "\n".join(lines)


def render_json(facts: Facts, problems: list[str]) -> str:
    report = dataclasses.asdict(facts)
    report["gpus"] = [
        {**dataclasses.asdict(gpu), "capability": "{}.{}".format(*gpu.capability)} for gpu in facts.gpus
    ]
    report["problems"] = problems
    report["ok"] = not problems
    return json.dumps(report, indent=2)
