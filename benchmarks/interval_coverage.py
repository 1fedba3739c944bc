"""How often the 95% intervals of AP, APr, APc and APf hold the population's value, by simulation.

    .venv/bin/python benchmarks/interval_coverage.py                  # 200 validation sets of 2000 images
    .venv/bin/python benchmarks/interval_coverage.py --sets 20 --population 5000 --images 500   # a look

The population is a seeded, finite pool of LVIS-like images (``--population``, 50,000 by default):
rare, common and frequent categories in LVIS v1's proportions (337 : 461 : 405) whose frequencies are
long-tailed (an image holds a rare category with probability 0.02% to 0.15%, so a validation set of 2000
images holds 0 to 3 of its images, as LVIS v1 val holds a rare category's; common 0.15% to 1%, frequent
1% to 15%); a category's detector is better the more frequent it is.  Each ground-truth box is detected
with a per-category probability, by a jittered box whose score falls with its jitter (so the same
detection is a true positive at IoU 0.5 and a false positive at 0.9), sometimes twice (a lower-scored
duplicate); each image also holds about 20 false positives of categories its negative list names, with
lower scores.  The pool is written as an LVIS annotation file and a bbox result file and matched once by
the fast evaluator.

Two values an interval could be asked to hold, both printed: AP on all of the pool's images (the
functional at the images' distribution, what AP on a validation set converges to as the set grows) and
the mean of AP over validation sets of the chosen size (``--mean-sets`` further sets).  They differ by
far more than an interval's width: AP depends on how many ground-truth boxes a class has (one box found
at rank 3 scores 1/3 at every recall point; the same detector on two hundred boxes traces the whole
curve, lower), so a validation set with LVIS's one to three images of a rare class measures a different
quantity from an infinite one, and no resampling of the set can tell how AP would come out on more
images than it holds.  The mean at the set's size is the value the protocol's AP estimates without bias
and the one two methods evaluated on the same validation set are compared by, so its coverage is the
figure that decides; the other shows the gap.  Sets are drawn without replacement from the pool (no
image twice, as in a real validation set; the finite population shrinks the sampling variance by
1 - n/N, 4% at the defaults, which makes every interval a little conservative).

Each validation set is the pool's matches restricted to its images (matching is per image and
category, so it does not depend on which other images are in the set; ``tests/test_interval_coverage.py``
checks the restricted matches against the evaluator run on the set's own files), and each method's
replicates are the exact protocol on reweighted images
(:func:`eqlv2.evaluation.lvis_scoring.bootstrap_replicates`).  Methods, all with ``--rounds`` replicates:
``percentile`` (resampling with replacement, as ``evaluate-lvis`` did), ``basic`` (the same replicates
reflected about the estimate), ``bca`` (bias-corrected and accelerated, the acceleration from a
delete-a-group jackknife of 100 groups), ``centred bootstrap`` (the replicates' law about their own mean,
reflected about the estimate), ``reflected subsampling`` (half of the images without replacement, their
law about the estimate reflected: Politis and Romano's interval, which also removes a bias that falls
as 1/n) and ``subsampling`` (the same half-samples about their own mean, ``evaluate-lvis``'s default;
:mod:`eqlv2.evaluation.lvis_intervals`).  Printed: the coverage of each (with its Monte Carlo standard
error), how many intervals miss below and above, and the mean width.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson

from eqlv2.evaluation.lvis import match_lvis
from eqlv2.evaluation.lvis_intervals import (
    JACKKNIFE_GROUPS,
    bca_interval,
    jackknife_weights,
    percentile_interval,
    subsample_weights,
    subsampling_interval,
)
from eqlv2.evaluation.lvis_matching import Matches
from eqlv2.evaluation.lvis_scoring import BOOTSTRAP_KEYS, bootstrap_replicates, resample_weights

METHODS = ("percentile", "basic", "bca", "centred bootstrap", "reflected subsampling", "subsampling")
GROUP_SHARES = {"r": 337, "c": 461, "f": 405}  # LVIS v1's categories per frequency group
PREVALENCE = {"r": (2e-4, 1.5e-3), "c": (1.5e-3, 1e-2), "f": (1e-2, 0.15)}  # P(an image holds it)
WIDTH, HEIGHT = 640, 480
CHUNK = 5000  # images generated at a time


def machine() -> str:
    """The machine, in words: CPU model, cores, Python, numpy."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}"


@dataclasses.dataclass
class Categories:
    """The population's categories: frequency group letter, P(an image holds one), detector quality."""

    letter: np.ndarray  # (K,) "r", "c" or "f"
    prevalence: np.ndarray  # (K,)
    quality: np.ndarray  # (K,) logit of a true positive's score before noise
    recall: np.ndarray  # (K,) P(a ground-truth box is detected at all)


def make_categories(num_categories: int, rng: np.random.Generator) -> Categories:
    """LVIS v1's group proportions, log-uniform prevalence within each group's range, and detectors that
    are better on more frequent categories (as trained detectors are), with per-category scatter."""
    total = sum(GROUP_SHARES.values())
    counts = [round(num_categories * share / total) for share in GROUP_SHARES.values()]
    counts[-1] = num_categories - sum(counts[:-1])
    letter = np.repeat(list(GROUP_SHARES), counts)
    low = np.array([PREVALENCE[g][0] for g in letter])
    high = np.array([PREVALENCE[g][1] for g in letter])
    prevalence = np.exp(rng.uniform(np.log(low), np.log(high)))
    quality = 3.2 + 0.8 * np.log10(prevalence) + rng.normal(0, 0.4, num_categories)
    recall = np.clip(
        0.75 + 0.05 * np.log10(prevalence / 0.01) + rng.normal(0, 0.05, num_categories), 0.4, 0.97
    )
    return Categories(letter, prevalence, quality, recall)


def _jitter(x, y, w, h, spread, rng):
    """Boxes moved and resized by ``spread`` (relative), clipped to the image."""
    x2 = np.clip(x + rng.normal(0, 1, len(x)) * spread * w, 0, WIDTH - 2)
    y2 = np.clip(y + rng.normal(0, 1, len(y)) * spread * h, 0, HEIGHT - 2)
    w2 = np.minimum(w * np.exp(rng.normal(0, 1, len(w)) * spread), WIDTH - x2)
    h2 = np.minimum(h * np.exp(rng.normal(0, 1, len(h)) * spread), HEIGHT - y2)
    return x2, y2, w2, h2


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _chunk(count: int, cats: Categories, rng: np.random.Generator):
    """Ground truth, detections and negative lists of ``count`` images (image indices from 0)."""
    num_cats = len(cats.prevalence)
    image, category = np.nonzero(rng.random((count, num_cats)) < cats.prevalence)
    instances = 1 + rng.poisson(0.6, len(image))
    image, category = np.repeat(image, instances), np.repeat(category, instances)
    w = np.exp(rng.uniform(np.log(8), np.log(320), len(image)))
    h = np.minimum(w * np.exp(rng.normal(0, 0.4, len(image))), HEIGHT - 2)
    x, y = rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h)
    gt = (image, category, x, y, w, h)

    found = rng.random(len(image)) < cats.recall[category]
    spread = rng.uniform(0.02, 0.25, found.sum())
    boxes = _jitter(x[found], y[found], w[found], h[found], spread, rng)
    score = _sigmoid(cats.quality[category[found]] + rng.normal(0, 1, found.sum()) - 6 * spread)
    twice = rng.random(found.sum()) < 0.15
    dup_boxes = _jitter(*(b[twice] for b in boxes), rng.uniform(0.1, 0.4, twice.sum()), rng)
    dup_score = score[twice] * rng.uniform(0.3, 0.9, twice.sum())

    num_fp = rng.poisson(20, count)
    fp_image = np.repeat(np.arange(count), num_fp)
    weights = np.sqrt(cats.prevalence) / np.sqrt(cats.prevalence).sum()
    fp_category = rng.choice(num_cats, len(fp_image), p=weights)
    fp_w = np.exp(rng.uniform(np.log(8), np.log(320), len(fp_image)))
    fp_h = np.minimum(fp_w * np.exp(rng.normal(0, 0.4, len(fp_image))), HEIGHT - 2)
    fp_x, fp_y = rng.uniform(0, WIDTH - fp_w), rng.uniform(0, HEIGHT - fp_h)
    fp_score = _sigmoid(rng.normal(-1.5, 1.0, len(fp_image)))

    dets = tuple(
        np.concatenate(parts)
        for parts in zip(
            (image[found], category[found], *boxes, score),
            (image[found][twice], category[found][twice], *dup_boxes, dup_score),
            (fp_image, fp_category, fp_x, fp_y, fp_w, fp_h, fp_score),
            strict=True,
        )
    )
    # A false positive counts only where its category is verified absent: on the image's negative list.
    negatives = [[] for _ in range(count)]
    positive = set(zip(image.tolist(), category.tolist(), strict=True))
    for i, k in sorted(set(zip(fp_image.tolist(), fp_category.tolist(), strict=True))):
        if (i, k) not in positive:
            negatives[i].append(k + 1)
    return gt, dets, negatives


def write_population(directory: Path, num_images: int, num_categories: int, seed: int) -> tuple[Path, Path]:
    """The pool as an LVIS annotation file and a bbox result file (image ids 1.., category ids 1..)."""
    rng = np.random.default_rng(seed)
    cats = make_categories(num_categories, rng)
    chunk_rngs = [
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(-(-num_images // CHUNK))
    ]
    gt_path, dt_path = directory / "population_gt.json", directory / "population_dt.json"
    images, annotations, detections = [], [], []
    for index, first in enumerate(range(0, num_images, CHUNK)):
        count = min(CHUNK, num_images - first)
        (image, category, x, y, w, h), dets, negatives = _chunk(count, cats, chunk_rngs[index])
        images += [{"id": first + i + 1, "height": HEIGHT, "width": WIDTH, "neg_category_ids": negatives[i],
                    "not_exhaustive_category_ids": []} for i in range(count)]  # fmt: skip
        start = len(annotations)
        for j, (i, k, *box) in enumerate(zip(image.tolist(), category.tolist(), x, y, w, h, strict=True)):
            box = [round(float(v), 2) for v in box]
            annotations.append({"id": start + j + 1, "image_id": first + i + 1, "category_id": k + 1,
                                "bbox": box, "area": box[2] * box[3]})  # fmt: skip
        d_image, d_category, dx, dy, dw, dh, score = dets
        detections.append(
            orjson.dumps(
                [
                    {
                        "image_id": first + i + 1,
                        "category_id": k + 1,
                        "score": round(float(s), 6),
                        "bbox": [round(float(v), 2) for v in box],
                    }
                    for i, k, s, *box in zip(
                        d_image.tolist(), d_category.tolist(), score, dx, dy, dw, dh, strict=True
                    )
                ]
            )[1:-1]  # fmt: skip
        )
    categories = [{"id": k + 1, "name": f"c{k + 1}", "frequency": str(letter), "synset": f"s{k + 1}",
                   "image_count": 1, "instance_count": 1}
                  for k, letter in enumerate(cats.letter)]  # fmt: skip
    gt_path.write_bytes(
        orjson.dumps({"images": images, "categories": categories, "annotations": annotations})
    )
    dt_path.write_bytes(b"[" + b",".join(part for part in detections if part) + b"]")
    return gt_path, dt_path


def restrict(matches: Matches, chosen: np.ndarray) -> Matches:
    """The matches of the images where ``chosen`` (a bool per pool image) holds, at area "all".

    Matching is per (image, category), so each kept detection keeps its flags; the order (category,
    score, image, position) survives the selection, and so do the tie blocks, which never span images.
    """
    keep = chosen[matches.image]
    position = np.cumsum(keep) - keep  # a kept detection's index in the set
    new_image = np.cumsum(chosen) - 1
    num_cats = len(matches.category_start) - 1
    category = np.repeat(np.arange(num_cats), np.diff(matches.category_start))
    block_start = matches.tie_block_start[:-1]
    kept_blocks = block_start[keep[block_start]]
    gt_keep = chosen[matches.gt_image]
    return dataclasses.replace(
        matches,
        tp=matches.tp[:1, :, keep],
        fp=matches.fp[:1, :, keep],
        category_start=np.concatenate([[0], np.cumsum(np.bincount(category[keep], minlength=num_cats))]),
        image=new_image[matches.image[keep]],
        score=matches.score[keep],
        tie_block_start=np.append(position[kept_blocks], keep.sum()).astype(np.int64),
        num_gt=np.bincount(matches.gt_category[gt_keep & matches.gt_regular_all], minlength=num_cats)[
            None
        ].astype(np.int64),
        gt_image=new_image[matches.gt_image[gt_keep]],
        gt_category=matches.gt_category[gt_keep],
        gt_regular_all=matches.gt_regular_all[gt_keep],
    )


def set_intervals(
    matches: Matches, groups: list[np.ndarray], num_images: int, rounds: int, seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One validation set's estimate (AP, APr, APc, APf) and each method's intervals, (4, 2), NaN where
    a metric is undefined on the set."""
    estimate = bootstrap_replicates(matches, groups, np.ones((1, num_images), np.int64))[0]
    boot = bootstrap_replicates(matches, groups, resample_weights(num_images, rounds, seed))
    half = num_images // 2
    sub = bootstrap_replicates(matches, groups, subsample_weights(num_images, rounds, seed + 1, half))
    jack = bootstrap_replicates(matches, groups, jackknife_weights(num_images, JACKKNIFE_GROUPS, seed + 2))
    intervals = {method: np.full((len(BOOTSTRAP_KEYS), 2), np.nan) for method in METHODS}
    for column in range(len(BOOTSTRAP_KEYS)):
        b, s, j = (r[:, column][r[:, column] > -1] for r in (boot, sub, jack))
        if estimate[column] == -1 or not b.size or not s.size:
            continue
        t = estimate[column]
        low, high = percentile_interval(b)
        intervals["percentile"][column] = low, high
        intervals["basic"][column] = 2 * t - high, 2 * t - low
        intervals["bca"][column] = bca_interval(t, b, j)
        # The bootstrap's law about its own mean, reflected about the estimate (as subsampling does).
        intervals["centred bootstrap"][column] = t - (high - b.mean()), t - (low - b.mean())
        # Half-samples' law about the estimate, reflected (Politis and Romano): corrects the bias b(n)
        # when it falls as 1/n, since then b(n/2) - b(n) = b(n).
        low, high = percentile_interval(s)
        intervals["reflected subsampling"][column] = 2 * t - high, 2 * t - low
        intervals["subsampling"][column] = subsampling_interval(t, s, num_images, half)
    return np.where(estimate > -1, estimate, np.nan), intervals


def draw_set(num_pool: int, num_images: int, key: list[int]) -> np.ndarray:
    """A validation set: ``num_images`` of the pool's images without replacement, as a bool per image."""
    chosen = np.zeros(num_pool, bool)
    chosen[np.random.default_rng(key).choice(num_pool, num_images, replace=False)] = True
    return chosen


def expected_at_size(
    population: Matches, groups: list[np.ndarray], num_pool: int, num_images: int, draws: int, seed: int,
    threads: int,
) -> np.ndarray:  # fmt: skip
    """The mean of AP, APr, APc, APf over ``draws`` validation sets of ``num_images`` (other sets than
    :func:`simulate`'s): what the protocol gives a set of that size on average."""
    ones = np.ones((1, num_images), np.int64)

    def one(index: int) -> np.ndarray:
        matches = restrict(population, draw_set(num_pool, num_images, [seed, 1, index]))
        return bootstrap_replicates(matches, groups, ones)[0]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        values = np.stack(list(pool.map(one, range(draws))))
    return np.nanmean(np.where(values > -1, values, np.nan), axis=0)


def simulate(
    population: Matches, groups: list[np.ndarray], num_pool: int, num_images: int, sets: int, rounds: int,
    seed: int, threads: int,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:  # fmt: skip
    """Estimates (sets, 4) and intervals (method -> (sets, 4, 2)) of ``sets`` validation sets of
    ``num_images`` drawn without replacement from the pool, in threads (the kernels release the GIL)."""

    def one(index: int):
        matches = restrict(population, draw_set(num_pool, num_images, [seed, 0, index]))
        return set_intervals(matches, groups, num_images, rounds, seed + 10 * index)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one, range(sets)))
    estimates = np.stack([r[0] for r in results])
    intervals = {m: np.stack([r[1][m] for r in results]) for m in METHODS}
    return estimates, intervals


def coverage_table(truth: np.ndarray, intervals: dict[str, np.ndarray]) -> dict:
    """Per method and metric: coverage of ``truth``, misses below / above, mean width; over the sets
    where the metric is defined."""
    table = {}
    for method, bounds in intervals.items():
        rows = {}
        for column, key in enumerate(BOOTSTRAP_KEYS):
            low, high = bounds[:, column, 0], bounds[:, column, 1]
            defined = ~np.isnan(low)
            if not defined.any():
                rows[key] = {
                    "coverage": float("nan"),
                    "below": 0,
                    "above": 0,
                    "width": float("nan"),
                    "sets": 0,
                }
                continue
            low, high = low[defined], high[defined]
            rows[key] = {
                "coverage": float(np.mean((low <= truth[column]) & (truth[column] <= high))),
                "below": int(np.sum(high < truth[column])),
                "above": int(np.sum(low > truth[column])),
                "width": float(np.mean(high - low)),
                "sets": int(defined.sum()),
            }
        table[method] = rows
    return table


def _print_table(title: str, table: dict) -> None:
    print(f"\n{title}\n{'method':<22}" + "".join(f" {key:>22}" for key in BOOTSTRAP_KEYS))
    for method, rows in table.items():
        cells = []
        for key in BOOTSTRAP_KEYS:
            row = rows[key]
            se = np.sqrt(row["coverage"] * (1 - row["coverage"]) / max(row["sets"], 1))
            cells.append(
                f"{100 * row['coverage']:5.1f}±{100 * se:3.1f} ({row['below']:>2}<,{row['above']:>3}>)"
            )
        print(f"{method:<22}" + "".join(f" {cell:>22}" for cell in cells))
    print(f"{'mean width':<22}" + "".join(f" {'':>22}" for _ in BOOTSTRAP_KEYS))
    for method, rows in table.items():
        print(f"{method:<22}" + "".join(f" {100 * rows[key]['width']:>22.2f}" for key in BOOTSTRAP_KEYS))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--population", type=int, default=50_000, help="images in the pool (the population)")
    parser.add_argument("--categories", type=int, default=400, help="categories (LVIS v1's r/c/f shares)")
    parser.add_argument("--images", type=int, default=2000, help="images in a validation set")
    parser.add_argument("--sets", type=int, default=200, help="validation sets with intervals")
    parser.add_argument("--rounds", type=int, default=200, help="replicates per method and set")
    parser.add_argument("--mean-sets", type=int, default=1000, help="further sets for the mean at this size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="also write the figures")
    args = parser.parse_args(argv)
    if not 2 <= args.images < args.population:
        parser.error("a validation set holds at least 2 images and fewer than the population")
    start = time.perf_counter()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_population(Path(tmp), args.population, args.categories, args.seed)
        gt, population = match_lvis(*paths, "bbox")
    groups = gt.frequency_groups()
    sizes = ", ".join(f"{len(g)} {letter}" for letter, g in zip("rcf", groups, strict=True))
    print(f"population: {args.population} images, {args.categories} categories ({sizes}), "
          f"{len(population.gt_image)} boxes, {len(population.image)} detections; "
          f"built and matched in {time.perf_counter() - start:.0f} s")  # fmt: skip
    everything = bootstrap_replicates(population, groups, np.ones((1, args.population), np.int64))[0]
    at_size = expected_at_size(
        population, groups, args.population, args.images, args.mean_sets, args.seed, args.threads
    )
    estimates, intervals = simulate(
        population, groups, args.population, args.images, args.sets, args.rounds, args.seed, args.threads
    )
    print(f"{args.sets} validation sets of {args.images} images without replacement "
          f"(finite-population factor 1 - n/N = {1 - args.images / args.population:.3f}), {args.rounds} "
          f"replicates per method, jackknife of {JACKKNIFE_GROUPS} groups for bca")  # fmt: skip
    for title, values in ((f"mean over {args.mean_sets} sets of {args.images}", at_size),
                          (f"all {args.population} images", everything)):  # fmt: skip
        print(
            f"AP on {title}: "
            + ", ".join(f"{k} {100 * v:.2f}" for k, v in zip(BOOTSTRAP_KEYS, values, strict=True))
        )
    spread = np.nanstd(estimates, axis=0)
    print(
        "sd of AP over the sets: "
        + ", ".join(f"{k} {100 * v:.2f}" for k, v in zip(BOOTSTRAP_KEYS, spread, strict=True))
    )
    at_size_table = coverage_table(at_size, intervals)
    everything_table = coverage_table(everything, intervals)
    _print_table(f"coverage of the mean AP at {args.images} images, % ± Monte Carlo se "
                 "(misses below <, above >)", at_size_table)  # fmt: skip
    _print_table(f"coverage of AP on all {args.population} images", everything_table)
    wall = time.perf_counter() - start
    print(f"\nwall time {wall:.0f} s")
    figures = {"machine": machine(), "args": vars(args), "wall_s": wall,
               "mean_at_size": dict(zip(BOOTSTRAP_KEYS, at_size.tolist(), strict=True)),
               "population": dict(zip(BOOTSTRAP_KEYS, everything.tolist(), strict=True)),
               "sd": dict(zip(BOOTSTRAP_KEYS, spread.tolist(), strict=True)),
               "coverage_of_mean_at_size": at_size_table,
               "coverage_of_population": everything_table}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
