"""benchmarks/interval_coverage.py: its validation sets are the evaluator's, its figures are coverage."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from eqlv2.evaluation.lvis import evaluate_lvis, match_lvis
from eqlv2.evaluation.lvis_intervals import confidence_intervals
from eqlv2.evaluation.lvis_scoring import BOOTSTRAP_KEYS, bootstrap_replicates

from .conftest import REPO

_spec = importlib.util.spec_from_file_location(
    "interval_coverage", REPO / "benchmarks" / "interval_coverage.py"
)
interval_coverage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(interval_coverage)


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    directory = tmp_path_factory.mktemp("population")
    paths = interval_coverage.write_population(directory, 1500, 120, seed=4)
    gt, matches = match_lvis(*paths, "bbox")
    return paths, gt, matches


def _subset_files(paths, chosen, directory):
    """The validation set's own annotation and result files: the chosen images (ids are index + 1)."""
    gt_path, dt_path = paths
    ids = set((np.flatnonzero(chosen) + 1).tolist())
    gt = json.loads(gt_path.read_text())
    gt["images"] = [image for image in gt["images"] if image["id"] in ids]
    gt["annotations"] = [ann for ann in gt["annotations"] if ann["image_id"] in ids]
    dets = [det for det in json.loads(dt_path.read_text()) if det["image_id"] in ids]
    (directory / "set_gt.json").write_text(json.dumps(gt))
    (directory / "set_dt.json").write_text(json.dumps(dets))
    return directory / "set_gt.json", directory / "set_dt.json"


def test_a_validation_set_is_the_evaluator_on_its_own_files(population, tmp_path):
    paths, gt, matches = population
    chosen = interval_coverage.draw_set(1500, 300, [0, 0, 1])
    assert chosen.sum() == 300
    restricted = interval_coverage.restrict(matches, chosen)
    groups = gt.frequency_groups()
    ones = np.ones((1, 300), np.int64)
    ours = bootstrap_replicates(restricted, groups, ones)[0]
    subset = _subset_files(paths, chosen, tmp_path)
    reference = evaluate_lvis(*subset, "bbox", bootstrap=30, seed=2)
    for column, key in enumerate(BOOTSTRAP_KEYS):
        assert abs(ours[column] - reference[key]) <= 1e-9, key
    # Resampled too: the restricted matches are the set's matches, tie blocks and all.
    loaded, own = match_lvis(*subset, "bbox")
    assert confidence_intervals(restricted, groups, 300, 30, 2) == confidence_intervals(
        own, loaded.frequency_groups(), 300, 30, 2
    )
    # The population is LVIS-like: long-tailed, scores tell true from false positives.
    assert [len(g) for g in groups] == [34, 46, 40]
    counts = np.bincount(restricted.gt_category, minlength=120)
    assert np.median(counts[groups[0]]) <= 2 < np.median(counts[groups[2]])
    assert 0.05 < ours[0] < 0.6


def test_coverage_is_counted_per_metric_over_the_defined_sets():
    truth = np.array([0.5, 0.2, 0.3, 0.4])
    bounds = np.full((3, 4, 2), np.nan)
    bounds[:, 0] = [[0.4, 0.6], [0.55, 0.7], [0.1, 0.45]]  # holds, above, below
    bounds[:2, 1] = [[0.1, 0.3], [0.0, 0.1]]  # the third set has no rare class
    table = interval_coverage.coverage_table(truth, {"m": bounds})["m"]
    assert table["AP"] == {"coverage": pytest.approx(1 / 3), "below": 1, "above": 1,
                           "width": pytest.approx((0.2 + 0.15 + 0.35) / 3), "sets": 3}  # fmt: skip
    assert table["APr"]["sets"] == 2 and table["APr"]["coverage"] == 0.5 and table["APr"]["below"] == 1


def test_a_tiny_run_measures_every_method(tmp_path, capsys):
    out = tmp_path / "figures.json"
    figures = interval_coverage.main(["--population", "1200", "--categories", "60", "--images", "300",
                                      "--sets", "6", "--rounds", "20", "--mean-sets", "10",
                                      "--json", str(out)])  # fmt: skip
    assert json.loads(out.read_text())["coverage_of_mean_at_size"] == figures["coverage_of_mean_at_size"]
    for target in ("coverage_of_mean_at_size", "coverage_of_population"):
        assert set(figures[target]) == set(interval_coverage.METHODS)
        for method, rows in figures[target].items():
            for key in BOOTSTRAP_KEYS:
                row = rows[key]
                assert 0 < row["sets"] <= 6 and row["width"] > 0
                held = round(row["coverage"] * row["sets"])
                assert held + row["below"] + row["above"] == row["sets"], (method, key)
        # percentile and basic are one set of replicates, reflected: the same widths.
        assert figures[target]["percentile"]["AP"]["width"] == pytest.approx(
            figures[target]["basic"]["AP"]["width"]
        )
    # AP on few images is higher than on many: the two targets differ.
    assert figures["mean_at_size"]["AP"] > figures["population"]["AP"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("machine: ") and " cores, " in printed[0]
    assert printed[-1].startswith("wall time ")
