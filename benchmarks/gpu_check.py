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
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUNDLE_LIST = HERE / "gpu_bundle.txt"
MMCV_SDIST = "mmcv-2.1.0.tar.gz"
STEPS = ("preflight", "venv", "install", "build_mmcv", "ops", "eqlv2_loss", "toy_training", "lvis_timing")
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
TOY_CONFIGS = {
    "baseline": "toy/mask-rcnn_r18_fpn_ce_toy.py",
    "eqlv2": "toy/mask-rcnn_r18_fpn_eqlv2-loss_toy.py",
}
LVIS_CONFIGS = {
    "ce": "lvis_v1/mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py",
    "eqlv2": "lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss_ms-1x_lvis-v1.py",
    "mmdet_lvis": "mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py",
}
TOY_ITERS = 200
LVIS_IMAGE_SIZE = (1333, 800)  # width, height: the paper's test scale and the largest training scale
LVIS_CLASSES = 1203
LVIS_WARMUP_ITERS = 5
LVIS_TIMED_ITERS = 20
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # float32 CUDA vs CPU: summation order differs, nothing else
DEVICE = "cuda"  # what every check compares with the CPU


def layout() -> dict:
    """The report with every figure unmeasured (``null``); each step fills its own section."""
    toy_run = {"config": None, "iters": None, "seconds": None, "seconds_per_iter": None,
               "max_memory_mib": None, "first_loss": None, "last_loss": None, "finite": None}  # fmt: skip
    lvis_run = {"config": None, "seconds_per_iter_median": None, "seconds_per_iter_mean": None,
                "max_memory_mib": None, "last_loss": None, "finite": None}  # fmt: skip
    return {
        "format": "eqlv2-gpu-check/1",
        "machine": dict.fromkeys(("gpu", "compute_capability", "gpu_memory_mib", "driver", "cpus", "python",
                                  "torch", "torch_cuda", "nvcc")),  # fmt: skip
        "steps": {step: {"status": None, "seconds": None, "error": None} for step in STEPS},
        "build_mmcv": {"torch_cuda_arch_list": None, "max_jobs": None, "mmcv_cuda": None, "mmcv_archs": None,
                       "doctor_ok": None},  # fmt: skip
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
        "toy_training": {"make_toy_seconds": None, **{name: dict(toy_run) for name in TOY_CONFIGS}},
        "lvis_timing": {"image_size": None, "images_per_iter": None, "classes": None, "warmup_iters": None,
                        "timed_iters": None, **{name: dict(lvis_run) for name in LVIS_CONFIGS}},  # fmt: skip
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


def record_doctor(report: Path, doctor_json: Path, arch_list: str, max_jobs: int) -> None:
    """The build's result as ``eqlv2 doctor`` sees it; a build the doctor rejects fails the step."""
    try:
        doctor = json.loads(doctor_json.read_text())
    except (OSError, json.JSONDecodeError):
        _fail(f"eqlv2 doctor wrote no report to {doctor_json}: does eqlv2 import? (see steps.log)")
    update_report(report, "build_mmcv", {
        "torch_cuda_arch_list": arch_list, "max_jobs": max_jobs, "mmcv_cuda": doctor["mmcv_cuda"],
        "mmcv_archs": doctor["mmcv_archs"], "doctor_ok": doctor["ok"],
    })  # fmt: skip
    if not doctor["ok"]:
        _fail("eqlv2 doctor rejects the build: " + "; ".join(doctor["problems"]))


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


def _training_scalars(work_dir: Path) -> list[dict]:
    """mmengine's per-interval training log (``<timestamp>/vis_data/scalars.json``, one JSON per line)."""
    files = sorted(work_dir.glob("*/vis_data/scalars.json"))
    if not files:
        _fail(f"{work_dir}: no */vis_data/scalars.json: did training log anything?")
    return [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]


def _run(command: list[str]) -> None:
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError as err:
        _fail(f"{' '.join(command)} exited with status {err.returncode}")


def toy_training(report: Path, work: Path) -> None:
    """The embedded dataset, then the toy baseline and EQLv2 for 200 iterations each on the GPU."""
    _require_cuda()
    eqlv2 = [sys.executable, "-m", "eqlv2"]
    data = work / "toy"
    start = time.perf_counter()
    _run([*eqlv2, "make-toy", str(data)])
    update_report(report, "toy_training", {"make_toy_seconds": round(time.perf_counter() - start, 1)})
    for name, config in TOY_CONFIGS.items():
        work_dir = work / "toy_runs" / name
        if work_dir.exists():  # a rerun measures a fresh run, not a resumed one
            shutil.rmtree(work_dir)
        start = time.perf_counter()
        _run([*eqlv2, "train", config, "--data-root", str(data), "--work-dir", str(work_dir),
              "--out", str(work_dir / "model_final.pth"), "--max-iters", str(TOY_ITERS)])  # fmt: skip
        seconds = time.perf_counter() - start
        scalars = [s for s in _training_scalars(work_dir) if "loss" in s]
        per_iter = [s["time"] for s in scalars[1:]]  # the first interval holds the warm-up
        losses = [s["loss"] for s in scalars]
        update_report(report, "toy_training", {name: {
            "config": config, "iters": scalars[-1]["iter"], "seconds": round(seconds, 1),
            "seconds_per_iter": round(sum(per_iter) / len(per_iter), 4) if per_iter else None,
            "max_memory_mib": max((s["memory"] for s in scalars if "memory" in s), default=None),
            "first_loss": losses[0],
            "last_loss": losses[-1], "finite": all(map(math.isfinite, losses)),
        }})  # fmt: skip


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


def time_lvis_iteration(config: str, data_root: Path, work: Path) -> dict:
    """Seconds per training iteration (forward, backward, SGD step) of ``config`` on two 1333x800 images.

    The real model of the config, randomly initialised (no ImageNet weights: this is a timing), and one
    batch from the config's own dataset and pipeline, reused for every iteration (data loading excluded).
    """
    import torch
    from mmdet.registry import DATASETS, MODELS
    from mmengine.dataset import pseudo_collate
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope

    from eqlv2.config import load_run_config

    if config.startswith("mmdet::"):  # eqlv2's loader names the classes from the data; give it a file
        wrapper = work / "mmdet_lvis.py"
        wrapper.write_text(f"_base_ = '{config}'\n")
        config = str(wrapper)
    cfg = load_run_config(config, data_root)
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
    torch.backends.cudnn.benchmark = bool(cfg.get("env_cfg", {}).get("cudnn_benchmark", False))
    torch.cuda.reset_peak_memory_stats()
    times, loss = [], None
    for step in range(LVIS_WARMUP_ITERS + LVIS_TIMED_ITERS):
        torch.cuda.synchronize()
        start = time.perf_counter()
        log_vars = model.train_step(batch, optim_wrapper)
        torch.cuda.synchronize()
        if step >= LVIS_WARMUP_ITERS:
            times.append(time.perf_counter() - start)
        loss = float(log_vars["loss"].detach())
    times.sort()
    figures = {
        "seconds_per_iter_median": round(times[len(times) // 2], 4),
        "seconds_per_iter_mean": round(sum(times) / len(times), 4),
        "max_memory_mib": torch.cuda.max_memory_allocated() // 2**20,
        "last_loss": loss, "finite": math.isfinite(loss),
    }  # fmt: skip
    del model, optim_wrapper
    torch.cuda.empty_cache()
    return figures


def lvis_timing(report: Path, work: Path) -> None:
    _require_cuda()
    import eqlv2  # noqa: F401  (registers the package's modules)

    data_root = work / "lvis_like"
    write_lvis_like_data(data_root)
    update_report(report, "lvis_timing", {
        "image_size": list(LVIS_IMAGE_SIZE), "images_per_iter": 2, "classes": LVIS_CLASSES,
        "warmup_iters": LVIS_WARMUP_ITERS, "timed_iters": LVIS_TIMED_ITERS,
    })  # fmt: skip
    for name, config in LVIS_CONFIGS.items():
        figures = time_lvis_iteration(config, data_root, work)
        update_report(report, "lvis_timing", {name: {"config": config, **figures}})


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
    p = sub.add_parser("doctor", help="record the mmcv build from `eqlv2 doctor --json` output")
    p.add_argument("doctor_json", type=Path)
    p.add_argument("--arch-list", required=True)
    p.add_argument("--max-jobs", required=True, type=int)
    sub.add_parser("ops", help="RoIAlign and nms on CUDA against the CPU")
    sub.add_parser("eqlv2-loss", help="EQLv2's loss and statistics on CUDA against the CPU")
    for name in ("toy-training", "lvis-timing"):
        p = sub.add_parser(name, help="train the toy models" if name == "toy-training" else
                           "time a training iteration of the LVIS v1 configs")  # fmt: skip
        p.add_argument("--work", type=Path, required=True, help="scratch folder (data, work dirs)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "layout":
        print(json.dumps(layout(), indent=2))
    elif args.command == "record":
        record_step(args.report, args.step, args.status, args.seconds, args.error)
    elif args.command == "preflight":
        preflight(args.report, args.bundle, args.arch_file)
    elif args.command == "doctor":
        record_doctor(args.report, args.doctor_json, args.arch_list, args.max_jobs)
    elif args.command == "ops":
        check_ops(args.report)
    elif args.command == "eqlv2-loss":
        check_eqlv2_loss(args.report)
    elif args.command == "toy-training":
        toy_training(args.report, args.work)
    else:
        lvis_timing(args.report, args.work)


if __name__ == "__main__":
    main()
