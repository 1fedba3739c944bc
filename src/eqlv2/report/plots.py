"""The long-tail pictures of the report, drawn with matplotlib from the workflow's result files.

* :func:`plot_ap_vs_frequency`: each class's mask AP against its training image count (log scale), one
  series per method, the LVIS group boundaries (10 and 100 images) marked;
* :func:`plot_group_ap`: APr, APc, APf per method as grouped bars, with the standard deviation over seeds
  as error bar where a method ran with several, else the bootstrap interval where the evaluation computed
  one;
* :func:`plot_gradient_ratio`: each class's accumulated positive/negative gradient ratio, classes sorted
  by training instance count, raw and smoothed with a Gaussian of sigma 5 (EQLv2's Fig. 1; the sigma is
  what the author gave in tztztztztz/eqlv2 issues #12 and #18);
* :func:`plot_loss_curves`: the training loss per method, from mmengine's logged scalars;
* :func:`plot_openimages_groups`: the OpenImages branch's AP1..AP5 per method.

Every function writes one PNG (or SVG, by the suffix) and returns its path.  Inputs map a method key to
its file, or to one file per seed (the workflow's ``seeds``): then a method's series is the mean over its
seeds, and its gradients are summed over them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a compute node or in CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from eqlv2.checkpoint import load_checkpoint  # noqa: E402

GROUP_BOUNDARIES = (10, 100)  # LVIS: rare <= 10 training images < common <= 100 < frequent
GROUPS = ("APr", "APc", "APf")
SMOOTHING_SIGMA = 5


def gaussian_smooth(values: np.ndarray, sigma: float = SMOOTHING_SIGMA) -> np.ndarray:
    """A Gaussian filter (kernel truncated at 4 sigma, edges mirrored as scipy.ndimage's default)."""
    values = np.asarray(values, dtype=float)
    radius = int(4 * sigma + 0.5)
    if sigma <= 0 or values.size == 0:
        return values.copy()
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, radius, mode="symmetric")  # numpy mirrors again where the series is short
    return np.convolve(padded, kernel, mode="valid")


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part{out.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    return out


def plot_ap_vs_frequency(per_class_csv: str | Path, out: str | Path, labels: Mapping[str, str]) -> Path:
    """``labels``: method key -> legend label; the CSV is ``results/<dataset>/per_class_ap.csv``."""
    table = pd.read_csv(per_class_csv)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, label in labels.items():
        column = f"{key} AP"
        if column not in table:
            raise ValueError(f"{per_class_csv}: no column '{column}'")
        scored = table[table[column].notna()]
        ax.scatter(scored["train_image_count"], scored[column], s=12, alpha=0.6, label=label)
    for boundary in GROUP_BOUNDARIES:
        ax.axvline(boundary + 0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class (log scale); dashed: rare | common | frequent")
    ax.set_ylabel("mask AP (%)")
    ax.set_title("Per-class mask AP against training frequency")
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, out)


Inputs = Mapping[str, str | Path | Sequence[str | Path]]  # method key -> its file, or one file per seed


def _seed_files(files: str | Path | Sequence[str | Path]) -> list[Path]:
    return [Path(files)] if isinstance(files, (str, Path)) else [Path(f) for f in files]


def plot_group_ap(metrics: Inputs, out: str | Path, labels: Mapping[str, str]) -> Path:
    """``metrics``: method key -> ``metrics.json`` (mask APr/APc/APf, with ``*_ci95`` when bootstrapped),
    or one per seed."""
    keys = list(metrics)
    width = 0.8 / max(len(keys), 1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = np.arange(len(GROUPS))
    spreads = set()
    for i, key in enumerate(keys):
        runs = [json.loads(path.read_text())["segm"] for path in _seed_files(metrics[key])]
        seeds = np.array([[100 * segm[g] for g in GROUPS] for segm in runs])
        values, errors, segm = seeds.mean(axis=0), None, runs[0]
        if len(runs) > 1:
            errors = seeds.std(axis=0, ddof=1)
            spreads.add(f"standard deviation over {len(runs)} seeds")
        elif all(f"{g}_ci95" in segm for g in GROUPS):
            spreads.add("95% bootstrap interval")
            low = np.array([100 * segm[f"{g}_ci95"][0] for g in GROUPS])
            high = np.array([100 * segm[f"{g}_ci95"][1] for g in GROUPS])
            errors = np.vstack([values - low, high - values]).clip(min=0)
        ax.bar(
            x + (i - (len(keys) - 1) / 2) * width, values, width, yerr=errors, capsize=2, label=labels[key]
        )
    ax.set_xticks(x, ["rare (APr)", "common (APc)", "frequent (APf)"])
    ax.set_ylabel("mask AP (%)")
    bars = f" (error bars: {'; '.join(sorted(spreads))})" if spreads else ""
    ax.set_title(f"Mask AP by frequency group{bars}")
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, out)


def gradient_ratio(
    gradients_files: str | Path | Sequence[str | Path], instance_counts: np.ndarray
) -> np.ndarray:
    """The per-class pos/neg ratio of a ``classifier_gradients.pt`` (or of the gradients of several seeds'
    files, summed: the accumulation over all their training), classes sorted by training instances, most
    frequent first (NaN where a class received no negative gradient)."""
    pos = neg = 0.0
    for path in _seed_files(gradients_files):
        state = load_checkpoint(path)  # a damaged file is one line, like a checkpoint
        classes = state["pos_grad"].numel()
        if state["pos_grad"].shape != instance_counts.shape:
            raise ValueError(f"{path}: {classes} classes, but the training file has {instance_counts.size}")
        pos = pos + state["pos_grad"].double().numpy()
        neg = neg + state["neg_grad"].double().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(neg > 0, pos / neg, np.nan)
    return ratio[np.argsort(-instance_counts, kind="stable")]


def training_instance_counts(train_ann: str | Path) -> np.ndarray:
    categories = sorted(json.loads(Path(train_ann).read_text())["categories"], key=lambda c: c["id"])
    return np.array([c["instance_count"] for c in categories], dtype=float)


def plot_gradient_ratio(
    gradients: Inputs, train_ann: str | Path, out: str | Path, labels: Mapping[str, str]
) -> Path:
    """``gradients``: method key -> its ``classifier_gradients.pt``, or one per seed."""
    counts = training_instance_counts(train_ann)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, path in gradients.items():
        ratio = gradient_ratio(path, counts)
        filled = pd.Series(ratio).interpolate(limit_direction="both").fillna(0).to_numpy()
        (line,) = ax.plot(ratio, linewidth=0.6, alpha=0.35)
        ax.plot(
            gaussian_smooth(filled), color=line.get_color(), linewidth=2, label=f"{labels[key]} (smoothed)"
        )
    ax.set_xlabel("class index, sorted by training instances (most frequent first)")
    ax.set_ylabel("accumulated positive / negative gradient")
    ax.set_title(f"Gradient ratio per class (thin: raw; thick: Gaussian, sigma {SMOOTHING_SIGMA})")
    ax.legend(fontsize=8)
    return _save(fig, out)


def read_losses(work_dir: str | Path) -> pd.DataFrame:
    """``iter`` and ``loss`` of every logged training step of a work dir, resumed runs joined."""
    rows = []
    for path in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if "loss" in record and "iter" in record:
                rows.append((record["iter"], record["loss"]))
    if not rows:
        raise ValueError(f"{work_dir}: no logged training loss (*/vis_data/scalars.json)")
    frame = pd.DataFrame(rows, columns=["iter", "loss"])
    return frame.drop_duplicates("iter", keep="last").sort_values("iter")


def plot_loss_curves(work_dirs: Inputs, out: str | Path, labels: Mapping[str, str]) -> Path:
    """``work_dirs``: method key -> its mmengine work dir (``results/<dataset>/<method>/train``), or one per
    seed (the curve is their mean at the iterations all of them logged)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    several = False
    for key, dirs in work_dirs.items():
        seeds = [read_losses(d).set_index("iter")["loss"] for d in _seed_files(dirs)]
        several |= len(seeds) > 1
        losses = pd.concat(seeds, axis=1, join="inner").mean(axis=1)
        ax.plot(losses.index, losses.to_numpy(), label=labels[key], linewidth=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("total training loss")
    ax.set_yscale("log")
    mean = "mean over seeds; " if several else ""
    ax.set_title(f"Training loss per method ({mean}decoupled stages count their own iterations)")
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, out)


def plot_openimages_groups(
    grouped: Mapping[str, str | Path], out: str | Path, labels: Mapping[str, str]
) -> Path:
    """``grouped``: OpenImages method key -> its ``grouped_ap.json``."""
    names = [f"AP{i}" for i in range(1, 6)]
    keys = list(grouped)
    width = 0.8 / max(len(keys), 1)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    x = np.arange(len(names))
    for i, key in enumerate(keys):
        report = json.loads(Path(grouped[key]).read_text())
        values = [math.nan if report[n] is None else 100 * report[n] for n in names]  # None: no class scored
        ax.bar(x + (i - (len(keys) - 1) / 2) * width, values, width, label=labels[key])
    ax.set_xticks(x, ["AP1\n(rarest)", "AP2", "AP3", "AP4", "AP5\n(most frequent)"])
    ax.set_ylabel("AP@0.5 (%)")
    ax.set_title("OpenImages: AP of the five class groups by training instances")
    ax.legend(fontsize=8)
    return _save(fig, out)
