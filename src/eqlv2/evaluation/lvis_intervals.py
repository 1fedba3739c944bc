"""95% intervals of AP, APr, APc and APf over the validation images, by three resampling methods.

Every method evaluates the exact protocol on reweighted images (:func:`~eqlv2.evaluation.lvis_scoring.
bootstrap_replicates`: matching is done once, only the accumulation is redone), and differs in how the
images are drawn and how the replicates become an interval:

* ``subsampling`` (the default): half of the images without replacement (m-out-of-n with m = n/2;
  Politis and Romano 1994).  A half-sample is a validation set of its own, with no image twice, so its
  replicates spread as AP does from one validation set to another; their law about their own mean,
  scaled by sqrt(m / (n - m)) (a subsample's finite-population variance; 1 at m = n/2), is reflected
  about the estimate: ``[t - (q97.5 - mean), t - (q2.5 - mean)]``;
* ``percentile``: resamples with replacement, the 2.5th and 97.5th percentiles of the replicates.  AP is
  not a mean over images: an image drawn twice doubles its classes' true positives at the same scores,
  which raises their precision, so the replicates sit above the estimate and the interval can miss it;
* ``bca``: the same resamples, bias-corrected and accelerated (Efron 1987): the percentiles are moved by
  ``z0``, how far the replicates' median is from the estimate, and by the acceleration, the skewness of
  the images' influence, taken from a delete-a-group jackknife.  Its correction takes the replicates'
  shift for the estimator's bias, so it moves the interval below the estimate.

What the intervals cover: AP on a validation set depends on its size (a class with two ground-truth
boxes scores higher, on average, than the same detector on two hundred), so the value an interval can
hold is the protocol's AP averaged over validation sets of this size from the same images'
distribution.  ``benchmarks/interval_coverage.py`` measures each method's coverage of it by simulation:
on 200 sets of 2000 LVIS-like images, subsampling held it 95.0% (AP), 97.0% (APr), 97.5% (APc) and
95.5% (APf) of the time, the percentile bootstrap 15.5%, 80.0%, 57.0% and 43.0%, BCa less often still.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from eqlv2.evaluation.lvis_matching import Matches
from eqlv2.evaluation.lvis_scoring import BOOTSTRAP_KEYS, bootstrap_replicates, resample_weights

INTERVALS = ("subsampling", "bca", "percentile")
JACKKNIFE_GROUPS = 100  # BCa's acceleration: leave out one of this many groups of images at a time
_NORMAL = NormalDist()


def subsample_weights(num_images: int, rounds: int, seed: int, size: int | None = None) -> np.ndarray:
    """0/1 weights of ``rounds`` subsamples of ``size`` images (default half) without replacement."""
    size = num_images // 2 if size is None else size
    if not 1 <= size < num_images:
        raise ValueError(f"a subsample holds 1 to {num_images - 1} of the {num_images} images, not {size}")
    rng = np.random.default_rng(seed)
    weights = np.zeros((rounds, num_images), np.int64)
    for row in weights:
        row[rng.choice(num_images, size, replace=False)] = 1
    return weights


def jackknife_weights(num_images: int, groups: int, seed: int) -> np.ndarray:
    """One row per group of a seeded partition of the images into ``groups`` (at most one per image)
    nearly equal parts: weight 0 for the group's images, 1 for the rest.

    With as many groups as images this is the leave-one-out jackknife.  Grouping keeps the cost at
    ``groups`` evaluations on a validation set of any size; the acceleration, a ratio of the third
    moment of the influences to the 3/2 power of the second, is estimated without bias by group sums.
    """
    groups = min(groups, num_images)
    order = np.random.default_rng(seed).permutation(num_images)
    weights = np.ones((groups, num_images), np.int64)
    for row, members in zip(weights, np.array_split(order, groups), strict=True):
        row[members] = 0
    return weights


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the replicates."""
    low, high = np.percentile(replicates, [2.5, 97.5])
    return float(low), float(high)


def bca_interval(estimate: float, replicates: np.ndarray, jackknife: np.ndarray) -> tuple[float, float]:
    """Efron's bias-corrected and accelerated 95% interval from bootstrap replicates and jackknife values.

    ``z0`` is the normal quantile of the share of replicates below the estimate (ties count half; the
    share is kept within half a replicate of 0 and 1 so that an estimate outside every replicate still
    gives an interval, the extreme replicates); the acceleration is ``sum(d^3) / (6 sum(d^2)^1.5)`` with
    ``d`` the jackknife values' distances below their mean.
    """
    count = len(replicates)
    share = (np.sum(replicates < estimate) + 0.5 * np.sum(replicates == estimate)) / count
    z0 = _NORMAL.inv_cdf(float(np.clip(share, 0.5 / count, 1 - 0.5 / count)))
    d = jackknife.mean() - jackknife
    spread = float(np.sum(d**2))
    acceleration = float(np.sum(d**3)) / (6 * spread**1.5) if spread > 0 else 0.0
    levels = []
    for z in (_NORMAL.inv_cdf(0.025), _NORMAL.inv_cdf(0.975)):
        levels.append(100 * _NORMAL.cdf(z0 + (z0 + z) / (1 - acceleration * (z0 + z))))
    low, high = np.percentile(replicates, levels)
    return float(low), float(high)


def subsampling_interval(
    estimate: float, replicates: np.ndarray, num_images: int, size: int
) -> tuple[float, float]:
    """The m-out-of-n interval: the subsample replicates' law about their mean, scaled from ``size`` to
    ``num_images`` images (``sqrt(m / (n - m))``), reflected about the estimate, within AP's range [0, 1].

    Centred on the replicates' own mean, not on the estimate: a half-sample's AP is higher than the
    full set's for the reason a small set's AP is higher than a large one's, a shift that is no part of
    the estimate's spread about the mean AP at its size.
    """
    scale = np.sqrt(size / (num_images - size))
    centre = replicates.mean()
    low, high = np.percentile(replicates, [2.5, 97.5])
    bounds = np.clip([estimate - scale * (high - centre), estimate - scale * (low - centre)], 0.0, 1.0)
    return float(bounds[0]), float(bounds[1])


def confidence_intervals(
    matches: Matches,
    groups: list[np.ndarray],
    num_images: int,
    rounds: int,
    seed: int,
    method: str = INTERVALS[0],
) -> dict[str, list[float]]:
    """``<key>_ci95: [low, high]`` of AP, APr, APc and APf by ``method`` from ``rounds`` resamples of the
    ``num_images`` validation images (those without detections or ground truth included: they are drawn).

    A metric is left out where it is undefined on the validation set (no category of its group has
    ground truth); replicates where it is undefined (no category of the group drawn) are not counted.
    """
    if method not in INTERVALS:
        raise ValueError(f"interval method must be one of {INTERVALS}, got {method!r}")
    estimate = bootstrap_replicates(matches, groups, np.ones((1, num_images), np.int64))[0]
    if method == "subsampling":
        size = num_images // 2
        replicates = bootstrap_replicates(matches, groups, subsample_weights(num_images, rounds, seed, size))
    else:
        replicates = bootstrap_replicates(matches, groups, resample_weights(num_images, rounds, seed))
    if method == "bca":
        jackknife = bootstrap_replicates(
            matches, groups, jackknife_weights(num_images, JACKKNIFE_GROUPS, seed)
        )
    intervals = {}
    for column, key in enumerate(BOOTSTRAP_KEYS):
        values = replicates[:, column]
        values = values[values > -1]
        if estimate[column] == -1 or not values.size:
            continue
        if method == "percentile":
            low, high = percentile_interval(values)
        elif method == "bca":
            jack = jackknife[:, column]
            low, high = bca_interval(estimate[column], values, jack[jack > -1])
        else:
            low, high = subsampling_interval(estimate[column], values, num_images, size)
        intervals[f"{key}_ci95"] = [low, high]
    return intervals
