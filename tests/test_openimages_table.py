"""The OpenImages table: rows in the original's order, AP and AP1..AP5 in percent, the paper beside ours."""

from __future__ import annotations

import json

import pytest

from eqlv2.cli import main
from eqlv2.methods import OPENIMAGES_METHODS, PUBLISHED_OPENIMAGES
from eqlv2.tools.openimages_table import build_openimages_table


def _report(path, mean, groups):
    report = {"mAP": mean, **{f"AP{i}": value for i, value in enumerate(groups, start=1)}}
    path.write_text(json.dumps(report))
    return path


def test_rows_follow_the_original_order_in_percent(tmp_path):
    reports = {
        "r18_eqlv2": _report(tmp_path / "c.json", 0.591, [0.357, 0.521, 0.64, 0.634, 0.834]),
        "r18_ce": _report(tmp_path / "a.json", 0.484, [0.135, 0.236, 0.599, None, 0.85]),
        "r18_eql": _report(tmp_path / "b.json", 0.538, [0.097, 0.439, 0.712, 0.624, 0.871]),
    }
    frame = build_openimages_table(reports, "toy")
    assert list(frame["method"]) == [
        "Faster-R18 (half width)",
        "Faster-R18 (half width) + EQL",
        "Faster-R18 (half width) + EQLv2",
    ]
    assert list(frame.columns) == ["method", "AP", "AP1", "AP2", "AP3", "AP4", "AP5"]
    assert frame.loc[0, "AP"] == pytest.approx(48.4) and frame.loc[2, "AP1"] == pytest.approx(35.7)
    assert frame.loc[0, "AP4"] != frame.loc[0, "AP4"]  # a group without ground truth stays empty (NaN)


def test_the_real_data_puts_the_published_numbers_beside_ours(tmp_path):
    report = _report(tmp_path / "r50.json", 0.5, [0.45, 0.5, 0.52, 0.53, 0.55])
    frame = build_openimages_table({"r50_eqlv2": report}, "openimages")
    row = frame.iloc[0]
    assert row["method"] == "Faster-R50 + EQLv2"
    assert (row["AP (paper)"], row["AP1 (paper)"], row["AP5 (paper)"]) == (52.6, 48.6, 55.8)
    assert row["AP Δ"] == pytest.approx(50.0 - 52.6) and row["AP1 Δ"] == pytest.approx(45.0 - 48.6)


def test_published_table_is_the_original_readme():
    assert set(PUBLISHED_OPENIMAGES) <= set(OPENIMAGES_METHODS)
    assert PUBLISHED_OPENIMAGES["r50_ce"] == (43.1, 26.3, 42.5, 45.2, 48.2, 52.6)
    assert PUBLISHED_OPENIMAGES["r101_eqlv2"] == (55.1, 51.0, 55.2, 56.6, 55.6, 57.5)


def test_cli_writes_markdown_and_csv_and_rejects_a_report_of_another_kind(tmp_path, capsys):
    report = _report(tmp_path / "ce.json", 0.4, [0.1, 0.2, 0.3, 0.4, 0.5])
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    args = ["openimages-table", "--dataset", "toy", "--md", str(md), "--csv", str(csv)]
    assert main([*args, "--reports", f"r18_ce={report}"]) == 0
    rows = csv.read_text().splitlines()
    assert rows == ["method,AP,AP1,AP2,AP3,AP4,AP5", "Faster-R18 (half width),40.0,10.0,20.0,30.0,40.0,50.0"]
    assert "| Faster-R18 (half width) |" in md.read_text()

    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"bbox": {"AP": 0.3}}))
    assert main([*args, "--reports", f"r18_ce={metrics}"]) == 2
    assert f"{metrics}: no 'mAP'" in capsys.readouterr().err
    assert main([*args, "--reports", f"softmax={report}"]) == 2
    assert "unknown OpenImages method 'softmax'" in capsys.readouterr().err
