"""The interval methods of ``evaluate-lvis --bootstrap N --interval ...``, as a specification."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eqlv2.cli import main
from eqlv2.evaluation.lvis import evaluate_lvis, match_lvis
from eqlv2.evaluation.lvis_intervals import (
    INTERVALS,
    bca_interval,
    confidence_intervals,
    jackknife_weights,
    percentile_interval,
    subsample_weights,
    subsampling_interval,
)
from eqlv2.evaluation.lvis_scoring import bootstrap_replicates, resample_weights

from .lvis_cases import CaseSize, make_case, write_case


def test_subsamples_hold_half_the_images_each_at_most_once():
    weights = subsample_weights(11, 50, seed=3)
    assert weights.shape == (50, 11)
    assert set(np.unique(weights)) == {0, 1}  # without replacement
    assert (weights.sum(axis=1) == 5).all()  # m = n // 2
    assert len({row.tobytes() for row in weights}) > 40  # the subsamples differ
    assert (weights.sum(axis=0) > 0).all()  # every image is drawn somewhere
    assert (subsample_weights(11, 50, seed=3) == weights).all()
    assert (subsample_weights(11, 5, seed=0, size=8).sum(axis=1) == 8).all()
    for size in (0, 11):
        with pytest.raises(ValueError, match="1 to 10 of the 11 images"):
            subsample_weights(11, 5, seed=0, size=size)


def test_jackknife_groups_leave_each_image_out_exactly_once():
    weights = jackknife_weights(10, 4, seed=1)
    assert weights.shape == (4, 10) and set(np.unique(weights)) == {0, 1}
    assert ((1 - weights).sum(axis=0) == 1).all()
    assert sorted((1 - weights).sum(axis=1)) == [2, 2, 3, 3]
    # As many groups as images (or more): the leave-one-out jackknife.
    loo = jackknife_weights(5, 100, seed=0)
    assert loo.shape == (5, 5) and ((1 - loo).sum(axis=1) == 1).all()


def test_bca_is_scipys_on_the_mean_of_a_skewed_sample():
    stats = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).exponential(size=30)
    result = stats.bootstrap((x,), np.mean, method="BCa", n_resamples=2000, rng=np.random.default_rng(1))
    leave_one_out = (x.sum() - x) / (len(x) - 1)
    low, high = bca_interval(float(x.mean()), result.bootstrap_distribution, leave_one_out)
    assert low == pytest.approx(result.confidence_interval.low, abs=1e-12)
    assert high == pytest.approx(result.confidence_interval.high, abs=1e-12)
    assert (low, high) != percentile_interval(result.bootstrap_distribution)  # it did correct something


def test_bca_without_bias_or_skew_is_the_percentile_interval_and_shifts_against_a_bias():
    replicates = np.linspace(-1, 1, 401)  # symmetric about the estimate 0: z0 = 0
    jackknife = np.array([-1.0, 0.0, 1.0])  # symmetric influences: no acceleration
    assert bca_interval(0.0, replicates, jackknife) == pytest.approx(percentile_interval(replicates))
    # Replicates above the estimate (the resamples' bias): the interval moves down, towards the estimate.
    low, high = bca_interval(0.0, replicates + 0.3, jackknife)
    plain_low, plain_high = percentile_interval(replicates + 0.3)
    assert low < plain_low and high < plain_high


def test_subsampling_interval_reflects_the_spread_about_the_replicates_mean():
    rng = np.random.default_rng(2)
    replicates = 0.02 * rng.gamma(2.0, size=4000)  # skewed to the right
    q_low, q_high = np.percentile(replicates, [2.5, 97.5])
    centre = replicates.mean()
    low, high = subsampling_interval(0.5, replicates, 200, 100)  # m = n/2: scale 1
    assert (low, high) == pytest.approx((0.5 - (q_high - centre), 0.5 - (q_low - centre)))
    assert 0.5 - low > high - 0.5  # the long tail above the mean becomes room below the estimate
    # A shift of the replicates (a half-sample's AP is higher than the set's) leaves it where it is.
    assert subsampling_interval(0.5, replicates + 0.1, 200, 100) == pytest.approx((low, high))
    # m = n/4: the spread of a quarter-sample about the set is sqrt(3) times the set's about its mean.
    quarter = subsampling_interval(0.5, replicates, 200, 50)
    assert quarter[1] - quarter[0] == pytest.approx((high - low) / np.sqrt(3))
    # Within AP's range.
    assert subsampling_interval(0.01, replicates, 200, 100) == pytest.approx((0.0, 0.01 - (q_low - centre)))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    gt, results = make_case(7, CaseSize(images=80))
    paths = write_case(tmp_path_factory.mktemp("intervals"), gt, results)
    loaded, matches = match_lvis(*paths, "bbox")
    return paths, loaded, matches


def test_each_method_is_its_formula_on_the_protocols_replicates(case):
    paths, gt, matches = case
    groups, n = gt.frequency_groups(), len(gt.image_ids)
    estimate = bootstrap_replicates(matches, groups, np.ones((1, n), np.int64))[0]
    halves = bootstrap_replicates(matches, groups, subsample_weights(n, 40, seed=5))
    resamples = bootstrap_replicates(matches, groups, resample_weights(n, 40, seed=5))
    jackknife = bootstrap_replicates(matches, groups, jackknife_weights(n, 100, seed=5))
    expected = {
        "subsampling": subsampling_interval(estimate[1], halves[:, 1][halves[:, 1] > -1], n, n // 2),
        "percentile": percentile_interval(resamples[:, 1][resamples[:, 1] > -1]),
        "bca": bca_interval(estimate[1], resamples[:, 1][resamples[:, 1] > -1], jackknife[:, 1]),
    }
    for method in INTERVALS:
        assert confidence_intervals(matches, groups, n, 40, 5, method)["APr_ci95"] == list(expected[method])
        via_file = evaluate_lvis(*paths, "bbox", bootstrap=40, seed=5, interval=method)
        assert via_file["APr_ci95"] == list(expected[method]), method
    assert evaluate_lvis(*paths, "bbox", bootstrap=40, seed=5)["APr_ci95"] == list(expected["subsampling"])
    with pytest.raises(ValueError, match="interval must be one of"):
        evaluate_lvis(*paths, "bbox", bootstrap=40, interval="normal")


def test_cli_chooses_the_interval_method(case, tmp_path):
    (gt_path, dt_path), _, _ = case
    written = {}
    for method in ("subsampling", "percentile"):
        out = tmp_path / f"{method}.json"
        argv = ["evaluate-lvis", "--ann", str(gt_path), "--results", str(dt_path), "--iou-type", "bbox",
                "--out", str(out), "--bootstrap", "20", "--seed", "1", "--interval", method]  # fmt: skip
        assert main(argv) == 0
        written[method] = json.loads(out.read_text())
        assert written[method]["AP_ci95"] == evaluate_lvis(gt_path, dt_path, "bbox", bootstrap=20, seed=1,
                                                           interval=method)["AP_ci95"]  # fmt: skip
    assert written["subsampling"]["AP_ci95"] != written["percentile"]["AP_ci95"]
