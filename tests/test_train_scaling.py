"""benchmarks/train_scaling.py: its runs are the workflow's training commands, its figures are measured."""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import REPO

_spec = importlib.util.spec_from_file_location("train_scaling", REPO / "benchmarks" / "train_scaling.py")
train_scaling = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train_scaling)


def test_each_process_count_runs_the_workflows_command(tmp_path):
    one = train_scaling.command(1, "toy/x.py", tmp_path, tmp_path / "toy", 7)
    two = train_scaling.command(2, "toy/x.py", tmp_path, tmp_path / "toy", 7)
    assert one[0].endswith("/eqlv2") and "--launcher" not in one and one[one.index("--max-iters") + 1] == "7"
    assert two[0].endswith("/torchrun") and two[1:5] == ["--standalone", "--nproc-per-node=2", "-m", "eqlv2"]
    assert two[5:] == [*one[1:], "--launcher", "pytorch"]


def test_one_and_two_processes_are_measured_and_compared(tmp_path, capsys):
    figures = tmp_path / "scaling.json"
    rows = train_scaling.main(["--processes", "1,2", "--iters", "2", "--warmup", "1", "--json", str(figures)])
    assert [row["processes"] for row in rows] == [1, 2]
    for row in rows:
        assert row["seconds_per_iter"] > 0 and row["wall_seconds"] > row["seconds_per_iter"] * 2
        assert row["images_per_second"] == pytest.approx(4 / row["seconds_per_iter"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("machine: ") and " cores, " in table[0]
    ratio = rows[1]["images_per_second"] / rows[0]["images_per_second"]
    assert table[-1].split()[:2] == ["2", "1"] and float(table[-1].split()[4]) == pytest.approx(
        ratio, abs=0.01
    )
    assert float(table[-2].split()[4]) == 1.0 and figures.exists()


def test_a_process_count_that_does_not_divide_the_global_batch_is_refused(capsys):
    with pytest.raises(SystemExit):
        train_scaling.main(["--processes", "1,3"])
    assert "--processes: 3 does not divide the global batch of 4" in capsys.readouterr().err
