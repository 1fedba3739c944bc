"""``results/<dataset>/per_class_ap.csv``: every method's per-class AP beside the class's training counts.

The per-class files come from the evaluator itself (on the small toy) where the test is about what it
writes, and are written by hand where the test is about the join's rules.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from eqlv2.cli import main
from eqlv2.evaluation.lvis import evaluate_lvis
from eqlv2.evaluation.per_class import join_per_class

HEADER = "category_id,name,frequency,image_count,instance_count,AP\n"


def _write(path, rows: str):
    path.write_text(HEADER + rows)
    return path


@pytest.fixture
def train_ann(tmp_path):
    categories = [{"id": 1, "name": "a", "image_count": 120, "instance_count": 300},
                  {"id": 2, "name": "b", "image_count": 3, "instance_count": 4},
                  {"id": 7, "name": "c", "image_count": 40, "instance_count": 41}]  # fmt: skip
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    return path


def test_one_row_a_class_one_column_a_method_in_percent_with_the_training_counts(tmp_path, train_ann):
    # the validation file's counts (here 9s) are not the training counts: the join takes the latter
    base = _write(tmp_path / "base.csv", "7,c,c,9,9,0.5\n1,a,f,9,9,0.25\n2,b,r,9,9,-1\n")
    base_box = _write(tmp_path / "base_box.csv", "1,a,f,9,9,0.5\n2,b,r,9,9,-1\n7,c,c,9,9,0.125\n")
    eqlv2 = _write(tmp_path / "eqlv2.csv", "1,a,f,9,9,0.3\n2,b,r,9,9,-1\n7,c,c,9,9,0.75\n")
    files = {"baseline": {"segm": base, "bbox": base_box}, "eqlv2": {"segm": eqlv2}}
    table = join_per_class(files, train_ann)
    counts = ["train_image_count", "train_instance_count"]
    methods = ["baseline AP", "baseline AP (box)", "eqlv2 AP"]
    assert list(table.columns) == ["category_id", "name", "frequency", *counts, *methods]
    assert list(table["category_id"]) == [1, 2, 7]  # sorted by id, whatever the files' order
    assert list(table["frequency"]) == ["f", "r", "c"]
    assert list(table["train_image_count"]) == [120, 3, 40]
    assert list(table["train_instance_count"]) == [300, 4, 41]
    assert list(table["baseline AP"].fillna(-999)) == [25.0, -999, 50.0]  # no val ground truth: empty
    assert list(table["baseline AP (box)"].fillna(-999)) == [50.0, -999, 12.5]
    assert list(table["eqlv2 AP"].fillna(-999)) == pytest.approx([30.0, -999, 75.0])


def test_a_method_of_several_seeds_gets_its_mean_per_class(tmp_path, train_ann):
    seed0 = _write(tmp_path / "s0.csv", "1,a,f,9,9,0.25\n2,b,r,9,9,-1\n7,c,c,9,9,0.5\n")
    seed1 = _write(tmp_path / "s1.csv", "1,a,f,9,9,0.75\n2,b,r,9,9,-1\n7,c,c,9,9,0.0\n")
    table = join_per_class({"baseline": {"segm": [seed0, seed1]}}, train_ann)
    assert list(table["baseline AP"].fillna(-999)) == [50.0, -999, 25.0]


def test_the_evaluators_per_class_rows_average_to_its_ap(small_toy, tmp_path):
    val = small_toy / "annotations/lvis_v1_val.json"
    rng = np.random.default_rng(0)  # noisy copies of the ground truth, some with another class
    dets = [{"image_id": a["image_id"], "score": float(rng.random()),
             "category_id": a["category_id"] if rng.random() < 0.7 else int(rng.integers(1, 49)),
             "bbox": (np.array(a["bbox"]) + rng.normal(0, 2, 4)).clip(1).tolist()}
            for a in json.loads(val.read_text())["annotations"]]  # fmt: skip
    results = tmp_path / "dt.json"
    results.write_text(json.dumps(dets))
    metrics = evaluate_lvis(val, results, "bbox", per_class=True)
    path = tmp_path / "per_class_bbox.csv"
    pd.DataFrame(metrics["per_class"]).to_csv(path, index=False)
    table = join_per_class({"baseline": {"bbox": path}}, small_toy / "annotations/lvis_v1_train.json")
    assert table["baseline AP (box)"].mean() == pytest.approx(100 * metrics["AP"])
    assert table["baseline AP (box)"].notna().sum() == sum(row["AP"] >= 0 for row in metrics["per_class"])


@pytest.mark.parametrize(
    ("rows", "named"),
    [("1,a,f,9,9,0.5\n2,b,r,9,9,0.5\n", "its categories differ from those of"),
     ("1,a,f,9,9,0.5\n2,b,r,9,9,0.5\n7,c,c,9,9,0.5\n8,d,c,9,9,0.5\n", "its categories differ"),
     ("1,a,f,9,9,0.5\n1,a,f,9,9,0.5\n7,c,c,9,9,0.5\n", "category_id 1 appears twice"),
     ("1,a,f,9,9,1.5\n2,b,r,9,9,0.5\n7,c,c,9,9,0.5\n", "category_id 1 has AP"),
     ("1,a,f,9,9,nan\n2,b,r,9,9,0.5\n7,c,c,9,9,0.5\n", "category_id 1 has AP")],
)  # fmt: skip
def test_files_that_do_not_fit_together_are_refused_naming_the_file(tmp_path, train_ann, rows, named):
    good = _write(tmp_path / "good.csv", "1,a,f,9,9,0.5\n2,b,r,9,9,0.5\n7,c,c,9,9,0.5\n")
    bad = _write(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError, match=named) as info:
        join_per_class({"baseline": {"segm": good}, "eql": {"segm": bad}}, train_ann)
    assert str(bad) in str(info.value)


def test_a_class_missing_from_the_training_file_is_refused(tmp_path, train_ann):
    per_class = _write(tmp_path / "p.csv", "1,a,f,9,9,0.5\n2,b,r,9,9,0.5\n9,z,c,9,9,0.5\n")
    with pytest.raises(ValueError, match=rf"{train_ann}: category_id 9 of .*p.csv is not in the training"):
        join_per_class({"baseline": {"segm": per_class}}, train_ann)


def test_the_verb_writes_the_table_or_one_line_and_nothing(tmp_path, train_ann, capsys):
    good = _write(tmp_path / "good.csv", "1,a,f,9,9,0.5\n2,b,r,9,9,0.5\n7,c,c,9,9,0.5\n")
    out = tmp_path / "per_class_ap.csv"
    assert main(["per-class-table", "--train-ann", str(train_ann), "--segm", f"baseline={good}",
                 "--bbox", f"baseline={good}", "--out", str(out)]) == 0  # fmt: skip
    assert out.read_text().splitlines()[0] == (
        "category_id,name,frequency,train_image_count,train_instance_count,baseline AP,baseline AP (box)"
    )
    # the columns follow the paper table's rows, whatever the order of the arguments
    assert main(["per-class-table", "--train-ann", str(train_ann), "--segm", f"eqlv2={good}", f"mine={good}",
                 f"baseline={good}", "--out", str(out)]) == 0  # fmt: skip
    assert out.read_text().splitlines()[0].endswith("baseline AP,eqlv2 AP,mine AP")
    out.unlink()
    truncated = tmp_path / "truncated.csv"
    truncated.write_text("category_id,name,freq")
    code = main(["per-class-table", "--train-ann", str(train_ann), "--segm", f"baseline={truncated}",
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(truncated) in err[0] and "missing column" in err[0]
    assert not out.exists()
