"""The paper table: the seed's rows and columns, in percent, and the published numbers on LVIS v1."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from eqlv2.cli import main
from eqlv2.evaluation.lvis import METRIC_KEYS
from eqlv2.methods import METHODS, PUBLISHED_LVIS_V1_SEGM, Method, configured_methods
from eqlv2.tools.table import build_table


def _metrics(tmp_path, key, segm_ap, box_ap):
    flat = dict.fromkeys(METRIC_KEYS, 0.0)
    segm = {**flat, "AP": segm_ap, "APr": segm_ap / 2, "APc": segm_ap, "APf": segm_ap * 1.5}
    path = tmp_path / f"{key}.json"
    path.write_text(json.dumps({"bbox": {**flat, "AP": box_ap}, "segm": segm}))
    return path


def test_rows_follow_the_papers_order_whatever_the_input_order(tmp_path):
    paper = [key for key, method in METHODS.items() if not method.beyond_paper]
    files = {key: _metrics(tmp_path, key, 0.2, 0.25) for key in reversed(paper)}
    table = build_table(files, "toy")
    assert list(table["method"]) == ["Baseline", "EQL", "RFS", "LWS", "cRT", "BAGS", "EQLv2", "EQLv2 + RFS"]
    assert list(table["end2end"]) == ["√", "√", "√", "×", "×", "×", "√", "√"]
    assert list(table.columns) == ["method", "end2end", "AP", "APr", "APc", "APf", "AP (box)"]


def test_numbers_are_percent_with_one_decimal(tmp_path):
    table = build_table({"eqlv2": _metrics(tmp_path, "eqlv2", 0.23456, 0.24)}, "toy")
    row = table.iloc[0]
    assert (row["AP"], row["APr"], row["APf"], row["AP (box)"]) == (23.5, 11.7, 35.2, 24.0)


def test_lvis_v1_puts_the_published_numbers_beside_ours(tmp_path):
    table = build_table({"eqlv2": _metrics(tmp_path, "eqlv2", 0.25, 0.3)}, "lvis_v1")
    row = table.iloc[0]
    assert row["AP (paper)"] == PUBLISHED_LVIS_V1_SEGM["eqlv2"][0] == 23.7
    assert row["AP Δ"] == pytest.approx(25.0 - 23.7, abs=0.05)
    assert row["AP (box, paper)"] == 24.2


def test_cli_writes_markdown_and_csv(tmp_path, capsys):
    path = _metrics(tmp_path, "baseline", 0.1, 0.12)
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    args = ["table", "--dataset", "toy", "--metrics", f"baseline={path}", "--md", str(md), "--csv", str(csv)]
    assert main(args) == 0
    assert "| Baseline |" in md.read_text()
    assert csv.read_text().splitlines()[1] == "Baseline,√,10.0,5.0,10.0,15.0,12.0"
    assert main([*args[:3], "--metrics", "nonsense", "--md", str(md), "--csv", str(csv)]) == 2


def test_bootstrap_intervals_show_as_plus_minus_half_width(tmp_path):
    path = _metrics(tmp_path, "eqlv2", 0.2, 0.25)
    metrics = json.loads(path.read_text())
    metrics["segm"].update({"AP_ci95": [0.19, 0.23], "APr_ci95": [0.02, 0.16], "APc_ci95": [0.18, 0.22],
                            "APf_ci95": [0.28, 0.32]})  # fmt: skip
    path.write_text(json.dumps(metrics))
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    assert (
        main(["table", "--dataset", "toy", "--metrics", f"eqlv2={path}", "--md", str(md), "--csv", str(csv)])
        == 0
    )
    row = md.read_text().splitlines()[2]
    assert "| 20.0 ± 2.0 | 10.0 ± 7.0 | 20.0 ± 2.0 | 30.0 ± 2.0 |" in row
    header = csv.read_text().splitlines()[0].split(",")
    assert header[2:10] == ["AP", "AP ±", "APr", "APr ±", "APc", "APc ±", "APf", "APf ±"]


def test_the_html_page_shows_the_markdowns_cells_under_its_title(tmp_path):
    """The page the report shows: the Markdown's columns and cells (± joined), the title escaped."""
    path = _metrics(tmp_path, "eqlv2", 0.2, 0.25)
    metrics = json.loads(path.read_text())
    metrics["segm"]["AP_ci95"] = [0.19, 0.23]
    path.write_text(json.dumps(metrics))
    md, csv, page = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.html"
    args = ["table", "--dataset", "toy", "--metrics", f"eqlv2={path}", "--md", str(md), "--csv", str(csv),
            "--html", str(page), "--title", "R&D <table>"]  # fmt: skip
    assert main(args) == 0
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<title>R&amp;D &lt;table&gt;</title>" in text
    assert "<caption>R&amp;D &lt;table&gt;</caption>" in text
    assert "<td>EQLv2</td>" in text and "<td>20.0 ± 2.0</td>" in text  # AP with its interval
    assert "<td>10.0</td>" in text  # APr without one
    header = [cell.strip("| ") for cell in md.read_text().splitlines()[0].split("|")[1:-1]]
    assert all(f"<th>{name}</th>" in text for name in header)


def test_rows_beyond_the_paper_follow_its_rows_and_say_so(tmp_path):
    keys = ["fed_loss", "eqlv2", "seesaw", "baseline", "seesaw_rfs"]
    table = build_table({key: _metrics(tmp_path, key, 0.2, 0.25) for key in keys}, "lvis_v1")
    assert list(table["method"]) == ["Baseline", "EQLv2", "Seesaw", "Seesaw + RFS", "Federated Loss"]
    assert list(table["note"]) == ["", "", "beyond the paper; reference: mmdet, 2x",
                                   "beyond the paper; reference: mmdet, 2x", "beyond the paper"]  # fmt: skip
    seesaw = table.iloc[2]
    # mmdet's Seesaw numbers are 2x: shown for reference, never as a difference to our 1x row.
    assert (seesaw["AP (paper)"], seesaw["AP (box, paper)"]) == (25.0, 25.6)
    assert pd.isna(seesaw["AP Δ"])
    assert "note" not in build_table({"eqlv2": _metrics(tmp_path, "eqlv2", 0.2, 0.25)}, "toy")


def test_the_ecm_row_shows_the_authors_1x_numbers_as_a_labelled_reference(tmp_path):
    table = build_table({key: _metrics(tmp_path, key, 0.2, 0.25) for key in ("ecm", "eqlv2")}, "lvis_v1")
    assert list(table["method"]) == ["EQLv2", "ECM"]
    ecm = table.iloc[1]
    assert ecm["note"] == "beyond the paper; reference: ECM-Loss, 1x with RFS + normed heads"
    # Another recipe (RFS, cosine classifier, normed mask): shown, never as a difference to our row.
    assert (ecm["AP (paper)"], ecm["AP (box, paper)"]) == (26.4, 26.9)
    assert pd.isna(ecm["AP Δ"])
    toy = build_table({"ecm": _metrics(tmp_path, "ecm", 0.2, 0.25)}, "toy")
    assert list(toy["note"]) == ["beyond the paper"]  # no reference off LVIS v1


def test_methods_of_ones_own_follow_every_known_row_in_their_order(tmp_path):
    own = {"zeta": Method("zeta", "Zeta (mine)", True, own=True),
           "alpha": Method("alpha", "Alpha (mine)", False, own=True)}  # fmt: skip
    keys = ["alpha", "fed_loss", "zeta", "baseline"]
    table = build_table({key: _metrics(tmp_path, key, 0.2, 0.25) for key in keys}, "lvis_v1", own)
    assert list(table["method"]) == ["Baseline", "Federated Loss", "Zeta (mine)", "Alpha (mine)"]
    assert list(table["end2end"]) == ["√", "√", "√", "×"]
    assert list(table["note"]) == ["", "beyond the paper", "own method", "own method"]
    # No published number for a method of one's own, on LVIS v1 either.
    mine = table.iloc[2]
    assert mine["AP"] == 20.0 and pd.isna(mine["AP (paper)"]) and pd.isna(mine["AP Δ"])
    with pytest.raises(ValueError, match="unknown method 'zeta'.*eqlv2 table --own zeta=LABEL"):
        build_table({"zeta": _metrics(tmp_path, "zeta", 0.2, 0.25)}, "toy")


def test_cli_takes_the_labels_of_ones_own_rows(tmp_path, capsys):
    base, mine = _metrics(tmp_path, "baseline", 0.1, 0.12), _metrics(tmp_path, "mine", 0.2, 0.3)
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    common = ["table", "--dataset", "toy", "--metrics", f"mine={mine}", f"baseline={base}"]
    out = ["--md", str(md), "--csv", str(csv)]
    assert main([*common, "--own", "mine=My loss, v2", "--decoupled", "mine", *out]) == 0
    lines = csv.read_text().splitlines()
    assert lines[0] == "method,end2end,AP,APr,APc,APf,AP (box),note"
    assert lines[1] == "Baseline,√,10.0,5.0,10.0,15.0,12.0,"
    assert lines[2] == '"My loss, v2",×,20.0,10.0,20.0,30.0,30.0,own method'
    assert "| My loss, v2 |" in md.read_text()
    capsys.readouterr()
    assert main([*common, *out]) == 2  # no label for 'mine'
    assert "unknown method 'mine'" in capsys.readouterr().err
    assert main([*common, "--own", "mine=Mine", "--decoupled", "other", *out]) == 2
    assert "--decoupled other: not a method of one's own" in capsys.readouterr().err
    assert main([*common, "--own", "mine=Mine", "baseline=Mine too", *out]) == 2
    assert "--own baseline: a known method, whose row label is 'Baseline'" in capsys.readouterr().err


def test_configured_methods_from_a_workflow_config():
    rows = configured_methods({"eqlv2": {"config": "a.py"}, "mine": {"config": "b.py", "name": "Mine"},
                               "mine_crt": {"config": "c.py", "name": "Mine (cRT)",
                                            "init": {"from": "mine", "surgery": "remove"}}})  # fmt: skip
    assert list(rows) == ["eqlv2", "mine", "mine_crt"]
    assert rows["eqlv2"] is METHODS["eqlv2"]
    assert rows["mine"] == Method("mine", "Mine", True, own=True)
    assert rows["mine_crt"] == Method("mine_crt", "Mine (cRT)", False, own=True)  # init: decoupled
    with pytest.raises(ValueError) as err:
        configured_methods({"crt": {"config": "a.py", "name": "X"}, "a": {"config": "b.py"},
                            "b": {"config": "c.py", "name": "Same"},
                            "c": {"config": "d.py", "name": "Same"}})  # fmt: skip
    problems = str(err.value).split("; ")
    assert len(problems) == 3
    assert problems[0] == ("methods.crt.name: 'crt' is a known method, whose row label is 'cRT' "
                           "(give a method of one's own a key of its own)")  # fmt: skip
    assert problems[1].startswith("methods: 'a' is not one of the known methods (baseline, eql, ")
    assert problems[-1] == "methods.c.name: 'Same' is already the row label of methods.b"
    assert "\n" not in str(err.value)


def test_several_seeds_of_a_method_give_their_mean_and_standard_deviation(tmp_path, capsys):
    """A method named once per seed: one row, the mean over the seeds, ± their sample standard deviation,
    and the number of seeds; the bootstrap intervals of single runs are not mixed in."""
    metrics = []
    for seed, ap in enumerate((0.20, 0.22, 0.27)):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        metrics.append(f"eqlv2={_metrics(folder, 'eqlv2', ap, ap + 0.01)}")
        metrics.append(f"baseline={_metrics(folder, 'baseline', 0.1, 0.1)}")
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    assert main(["table", "--dataset", "toy", "--metrics", *metrics, "--md", str(md), "--csv", str(csv)]) == 0
    table = pd.read_csv(csv)
    assert list(table.columns) == ["method", "end2end", "seeds", "AP", "AP sd", "APr", "APr sd", "APc",
                                   "APc sd", "APf", "APf sd", "AP (box)"]  # fmt: skip
    eqlv2 = table.iloc[1]
    assert (eqlv2["method"], eqlv2["seeds"]) == ("EQLv2", 3)
    assert eqlv2["AP"] == 23.0 and eqlv2["AP sd"] == 3.6  # sd of 20, 22, 27 (n - 1): 3.61
    assert eqlv2["APr"] == 11.5 and eqlv2["APr sd"] == 1.8 and eqlv2["AP (box)"] == 24.0
    assert table.iloc[0]["AP sd"] == 0.0
    assert "| EQLv2    | √         |       3 | 23.0 ± 3.6 |" in md.read_text()
    # The same file twice is a mistake in the command, not a seed.
    twice = ["--metrics", metrics[0], metrics[0]]
    assert main(["table", "--dataset", "toy", *twice, "--md", str(md), "--csv", str(csv)]) == 2
    assert "given twice" in capsys.readouterr().err
