"""The questions ``eqlv2 doctor`` asks native code, each answered in a child process.

Every probe here calls into a compiled library (torch's CUDA runtime, cuDNN, NCCL, mmcv's operators, or
reads mmcv's library file).  On an H200 under gVisor the doctor, then asking these in its own process,
died of SIGSEGV with no output, and with it every GPU job it guards.  So the doctor runs them in a child
(:func:`serve`, started by :class:`eqlv2.doctor.ProbeRunner` with faulthandler on): a crash or a hang
costs one answer, named, and the doctor goes on.

The child reads one request a line on stdin, ``{"probe": name, "args": {...}}``, and answers one line on
the stdout it was started with, ``{"probe": name, "value": ..., "error": ...}``; anything a library
prints goes to stderr, so it cannot be mistaken for an answer.  A probe's value is plain JSON.  This
module imports nothing native itself: the parent imports it too, to know the probes' names.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

PROBES: dict[str, Callable[..., Any]] = {}


def probe(function: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``probe_<name>`` as the probe ``<name>``."""
    PROBES[function.__name__.removeprefix("probe_")] = function
    return function


@probe
def probe_torch() -> dict[str, Any]:
    """Which torch this interpreter imports, and the CUDA it was built with (no CUDA call)."""
    import torch

    return {"version": torch.__version__, "file": torch.__file__, "cuda": torch.version.cuda}


@probe
def probe_mmcv_ops() -> dict[str, Any]:
    """mmcv's compiled operators: their library, and the CUDA they were compiled with (None: CPU-only).
    Importing them is what every training does first; failing here means the job cannot run."""
    import importlib.util

    from mmcv.ops import get_compiling_cuda_version

    spec = importlib.util.find_spec("mmcv._ext")
    compiled_with = get_compiling_cuda_version()
    return {
        "ext": spec.origin if spec is not None else None,
        "cuda": None if compiled_with == "not available" else compiled_with,
    }


@probe
def probe_mmcv_archs(path: str) -> list[str]:
    """The architectures in the library's ``.nv_fatbin`` (read with pread, no mapping)."""
    from eqlv2.cuda_arch import fatbin_architectures

    return fatbin_architectures(path)


def cudnn_version(number: int | None) -> str | None:
    """torch reports cuDNN as one integer: 8.9.7 is 8907, 9.10.2 is 91002."""
    if number is None:
        return None
    major, rest = (number // 10000, number % 10000) if number >= 10000 else (number // 1000, number % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


@probe
def probe_cudnn() -> str | None:
    import torch

    return cudnn_version(torch.backends.cudnn.version())


@probe
def probe_nccl() -> str | None:
    import torch

    if not (torch.distributed.is_available() and torch.distributed.is_nccl_available()):
        return None
    version = torch.cuda.nccl.version()
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)


@probe
def probe_gpus() -> dict[str, Any]:
    """The visible cards and the architectures torch's own kernels were built for."""
    import torch

    cards = [
        {
            "index": i,
            "name": torch.cuda.get_device_name(i),
            "capability": list(torch.cuda.get_device_capability(i)),
        }
        for i in range(torch.cuda.device_count())
    ]
    return {"gpus": cards, "torch_archs": list(torch.cuda.get_arch_list())}


@probe
def probe_functional(devices: list[int]) -> dict[str, Any]:
    """``nms`` and ``RoIAlign`` (forward and backward) on each device, against the CPU.

    Whatever the library's headers say, this is what a training runs first: a card the operators have
    no machine code for fails here with "no kernel image is available", a CPU-only build with
    "implementation for device cuda:0 not found".  Raises on the first disagreement.
    """
    import torch
    from mmcv.ops import RoIAlign, nms

    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 9, 10], [48, 52, 61, 59.0]]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.95])
    features = torch.linspace(-1, 1, 2 * 16 * 16).reshape(1, 2, 16, 16)
    rois = torch.tensor([[0, 1.5, 1.5, 9.0, 9.0], [0, 0, 0, 15, 15], [0, 4.2, 3.1, 6.7, 12.9]])
    roi_align = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=2, aligned=True)

    def run(device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _, keep = nms(boxes.to(device), scores.to(device), 0.5)
        leaf = features.to(device).requires_grad_()
        pooled = roi_align(leaf, rois.to(device))
        pooled.square().sum().backward()
        return keep.cpu(), pooled.detach().cpu(), leaf.grad.cpu()

    keep, pooled, grad = run("cpu")
    largest = {}
    for index in devices:
        device = f"cuda:{index}"
        gpu_keep, gpu_pooled, gpu_grad = run(device)
        torch.cuda.synchronize(device)
        if not torch.equal(gpu_keep, keep):
            raise RuntimeError(f"nms on {device} kept {gpu_keep.tolist()}, on the CPU {keep.tolist()}")
        for what, ours, cpu in (("RoIAlign", gpu_pooled, pooled), ("RoIAlign's gradient", gpu_grad, grad)):
            if not torch.allclose(ours, cpu, rtol=1e-4, atol=1e-5):
                difference = (ours - cpu).abs().max().item()
                raise RuntimeError(f"{what} on {device} differs from the CPU's by up to {difference:.3g}")
        largest[device] = max((gpu_pooled - pooled).abs().max().item(), (gpu_grad - grad).abs().max().item())
    return {"largest_difference": largest}


def serve() -> None:
    """The child's loop: answer each request on the original stdout, until stdin closes."""
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # what libraries print goes to stderr
    for line in sys.stdin:
        request = json.loads(line)
        name = request["probe"]
        try:
            answer = {"probe": name, "value": PROBES[name](**request.get("args", {})), "error": None}
        except Exception as err:  # the parent judges what a failure means for each probe
            answer = {"probe": name, "value": None, "error": f"{type(err).__name__}: {err}"}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
