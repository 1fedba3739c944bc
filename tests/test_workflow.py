"""The workflow: config checked at start-up, the DAG's chain, code quality gates, and a full small run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from eqlv2.checkpoint import load_checkpoint
from eqlv2.methods import METHODS as PAPER_ORDER

from .conftest import REPO
from .report_browser import view_report
from .workflow_helpers import SMALL_CONFIG, env, run_snakemake, shell_command, write_config

CHAIN = ["make_toy", "train", "surgery", "predict", "evaluate_lvis", "collect_metrics", "paper_table",
         "per_class_ap", "plot_ap_vs_frequency", "plot_group_ap", "plot_gradient_ratio", "plot_loss_curves",
         "all"]  # fmt: skip
PLOTS = ["ap_vs_frequency", "group_ap", "gradient_ratio", "loss_curves", "openimages_groups"]
OI_CHAIN = ["convert_openimages", "train_openimages", "predict_openimages", "export_openimages_predictions",
            "evaluate_openimages", "grouped_ap", "openimages_table"]  # fmt: skip
PAPER_ROWS = ["Baseline", "EQL", "RFS", "LWS", "cRT", "BAGS", "EQLv2", "EQLv2 + RFS"]
# the small setting's rows beyond the paper
ROWS = PAPER_ROWS + ["Seesaw", "Seesaw + RFS", "Federated Loss", "ECM"]
OI_ROWS = ["Faster-R18 (half width)", "Faster-R18 (half width) + EQL", "Faster-R18 (half width) + EQLv2"]


def _job_counts(stdout: str) -> dict[str, int]:
    counts, inside = {}, False
    for line in stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            inside = True
        elif inside and parts and parts[0] == "total":
            break
        elif inside and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_dry_run_lists_the_whole_chain(tmp_path):
    result = run_snakemake(tmp_path, write_config(tmp_path), "-n", "all")
    counts = _job_counts(result.stdout)
    assert set(counts) == set(CHAIN) | set(OI_CHAIN) | {"plot_openimages_groups"}, result.stdout
    assert counts["train"] == counts["predict"] == len(ROWS)
    assert counts["surgery"] == 2  # "remove" for cRT and BAGS, "reset" for LWS
    assert counts["evaluate_lvis"] == 2 * len(ROWS)  # bbox and segm
    assert counts["convert_openimages"] == 2  # train and validation
    for rule in OI_CHAIN[1:-1]:
        assert counts[rule] == len(OI_ROWS)


def test_one_seed_keeps_the_paths_and_seeds_its_runs(tmp_path):
    plan = run_snakemake(tmp_path, write_config(tmp_path, openimages=None), "-n", "-p", "all").stdout
    assert " --seed 0" in shell_command(plan, "results/toy/crt/model_final.pth")
    assert "baseline=results/toy/baseline/metrics.json" in shell_command(plan, "results/toy/paper_table.md")


def test_the_readmes_three_seed_run_of_the_embedded_default(tmp_path):
    """config/toy_seeds.yaml on top of the embedded default: the eight methods, each with seeds 0, 1, 2."""
    overlay = str(REPO / "config" / "toy_seeds.yaml")
    plan = run_snakemake(tmp_path, REPO / "config" / "config.yaml", overlay, "-n", "all").stdout
    counts = _job_counts(plan)
    assert counts["train"] == 3 * len(PAPER_ROWS) and counts["train_openimages"] == len(OI_ROWS)


def test_several_seeds_train_every_method_once_per_seed(tmp_path):
    configfile = write_config(tmp_path, seeds=[0, 1, 2], openimages=None)
    plan = run_snakemake(tmp_path, configfile, "-n", "-p", "all").stdout
    counts = _job_counts(plan)
    assert counts["train"] == counts["predict"] == counts["collect_metrics"] == 3 * len(ROWS)
    assert counts["surgery"] == 3 * 2  # each seed's decoupled runs start from that seed's baseline
    train = shell_command(plan, "results/toy/crt/seed2/model_final.pth")
    assert " --seed 2" in train and "--work-dir results/toy/crt/seed2/train " in train
    assert "--load-from results/toy/baseline/seed2/surgery/model_reset_remove.pth" in train
    # One row a method: the table and the plots are given each method once per seed.
    table = shell_command(plan, "results/toy/paper_table.md")
    assert [f"eqlv2_rfs=results/toy/eqlv2_rfs/seed{k}/metrics.json" in table for k in range(3)] == [True] * 3
    gradients = shell_command(plan, "results/toy/plots/gradient_ratio.png")
    assert "eql=results/toy/eql/seed1/train/classifier_gradients.pt" in gradients


def test_either_branch_can_be_left_out(tmp_path):
    lvis_only = _job_counts(
        run_snakemake(tmp_path, write_config(tmp_path, openimages=None), "-n", "all").stdout
    )
    assert set(lvis_only) == set(CHAIN)
    openimages_only = _job_counts(
        run_snakemake(tmp_path, write_config(tmp_path, methods=None), "-n", "all").stdout
    )
    assert set(openimages_only) == {"make_toy", *OI_CHAIN, "plot_openimages_groups", "all"}


@pytest.mark.parametrize(
    ("overrides", "named"),
    [({"bogus": 1}, "'bogus' was unexpected"),
     ({"train": {"max_iters": "many", "cfg_options": []}}, "train.max_iters: 'many' is not of type"),
     ({"methods": {"softmax": {"config": "x.py"}}}, "methods: 'softmax' is not one of"),
     ({"openimages": {"methods": {"r50_focal": {"config": "x.py"}}}},
      "openimages.methods: 'r50_focal' does not"),
     ({"methods": {"crt": {"config": "x.py", "init": {"from": "baseline", "surgery": "remove"}}}},
      "methods.crt.init.from: 'baseline' is not one of the methods"),
     ({"published": {"eqlv2": {"sha256": None}}, "methods": {"baseline": {"config": "x.py"}}},
      "published.eqlv2: 'eqlv2' is not one of the methods"),
     ({"source": "openimages", "openimages": {"images_dir": None, "mirrors": {}, "methods": {}}},
      "openimages.images_dir: None is not of type 'string'")],
)  # fmt: skip
def test_a_wrong_key_or_type_stops_the_run_naming_it(tmp_path, overrides, named):
    configfile = write_config(tmp_path, **overrides)
    result = run_snakemake(tmp_path, configfile, "-n", "all", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "ConfigError" in output and str(configfile) in output and named in output


def test_code_quality_gates():
    bindir = Path(sys.executable).parent
    for command in (["ruff", "check", "."], ["snakefmt", "--check", "."], ["snakemake", "--lint"]):
        result = subprocess.run([str(bindir / command[0]), *command[1:]], cwd=REPO, env=env(),
                                capture_output=True, text=True)  # fmt: skip
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"


SEEDS = [0, 1]
# The end-to-end run: the small setting with two seeds, each run half the small setting's iterations.
HALF = SMALL_CONFIG["train"]["max_iters"] // 2
OPTIONS = [*SMALL_CONFIG["train"]["cfg_options"], "default_hooks.logger.interval=5"]  # 4 points a curve
E2E = {"seeds": SEEDS, "train": {**SMALL_CONFIG["train"], "max_iters": HALF, "cfg_options": OPTIONS}}


def _runs(method: str) -> list[str]:
    return [f"{method}/seed{seed}" for seed in SEEDS]


@pytest.mark.slow
def test_small_setting_runs_end_to_end(tmp_path):
    """make-toy -> train -> surgery -> decoupled training -> predict -> evaluate -> paper table, every
    method once per seed."""
    configfile = write_config(tmp_path, **E2E)
    # (About 25 minutes on this project's 2-core machines, of which training is most: room for slower ones.)
    run_snakemake(tmp_path, configfile, "--cores", "2", "all", timeout=2400)

    seeds = [json.loads((tmp_path / f"results/toy/{r}/metrics.json").read_text()) for r in _runs("baseline")]
    for metrics in seeds:
        assert set(metrics) == {"bbox", "segm"}
        assert all(0 <= metrics[t]["AP"] <= 1 for t in metrics)
        # The small setting bootstraps (evaluation.bootstrap: 50): intervals in each run's metrics.json.
        low, high = metrics["segm"]["APr_ci95"]
        assert 0 <= low <= high <= 1
    fc_cls = [load_checkpoint(tmp_path / f"results/toy/{r}/model_final.pth")["state_dict"]
              ["roi_head.bbox_head.fc_cls.weight"] for r in _runs("baseline")]  # fmt: skip
    assert not torch.equal(*fc_cls)  # two seeds, two models
    # The table: each method's mean over its seeds ± their standard deviation, with the number of seeds.
    table = pd.read_csv(tmp_path / "results/toy/paper_table.csv", keep_default_na=False)
    assert list(table.columns) == ["method", "end2end", "seeds", "AP", "AP sd", "APr", "APr sd", "APc",
                                   "APc sd", "APf", "APf sd", "AP (box)", "note"]  # fmt: skip
    assert list(table["method"]) == ROWS  # the paper's rows first, then the new ones
    assert list(table["note"]) == [""] * len(PAPER_ROWS) + ["beyond the paper"] * 4
    assert list(table["seeds"]) == [len(SEEDS)] * len(ROWS)
    baseline = table.iloc[0]
    assert baseline["method"] == "Baseline" and baseline["end2end"] == "√"
    ap = [100 * metrics["segm"]["AP"] for metrics in seeds]
    assert baseline["AP"] == pytest.approx(round(float(np.mean(ap)), 1))
    assert baseline["AP sd"] == pytest.approx(round(float(np.std(ap, ddof=1)), 1))
    markdown = (tmp_path / "results/toy/paper_table.md").read_text()
    assert "| EQLv2 + RFS " in markdown and " ± " in markdown  # (columns padded to the longest name)
    _check_per_class(tmp_path, seeds)
    _check_classifier_gradients(tmp_path)
    _check_seeded_training(tmp_path)
    for name in PLOTS:  # drawn: a PNG with more than one colour
        image = matplotlib.image.imread(tmp_path / f"results/toy/plots/{name}.png")
        assert image.shape[0] > 100 and float(image[..., :3].std()) > 0.01, name
    _check_openimages_branch(tmp_path)
    # The report of the run, as a person sees it in a browser (make report).
    run_snakemake(tmp_path, configfile, "--report", "results/report.html")
    _check_report(tmp_path / "results/report.html")
    # The decoupled methods started from the baseline's checkpoint of their seed after surgery.
    for run in _runs("baseline"):
        for surgery in ("remove", "reset"):
            assert (tmp_path / f"results/toy/{run}/surgery/model_reset_{surgery}.pth").is_file()

    # Everything is up to date: a second run does nothing.
    again = run_snakemake(tmp_path, configfile, "--cores", "2", "all")
    assert "Nothing to be done" in again.stdout + again.stderr

    # The README's commands for rerunning one stage.  Only evaluation (no inference, no training):
    plan = _job_counts(run_snakemake(tmp_path, configfile, "-n", "all", "-R", "evaluate_lvis").stdout)
    runs = len(SEEDS) * len(ROWS)
    assert plan == {"evaluate_lvis": 2 * runs, "collect_metrics": runs, "paper_table": 1,
                    "per_class_ap": 1, "plot_ap_vs_frequency": 1, "plot_group_ap": 1, "all": 1}  # fmt: skip
    # Only the table:
    plan = _job_counts(run_snakemake(tmp_path, configfile, "-n", "all", "-R", "paper_table").stdout)
    assert plan == {"paper_table": 1, "all": 1}
    # Only one run of a method's decoupled stage, retrained from scratch (its work dir removed):
    subprocess.run(["rm", "-r", str(tmp_path / "results/toy/crt/seed1/train")], check=True)
    rerun = ("all", "-R", "results/toy/crt/seed1/model_final.pth")
    plan = _job_counts(run_snakemake(tmp_path, configfile, "-n", *rerun).stdout)
    assert plan == {"train": 1, "predict": 1, "evaluate_lvis": 2, "collect_metrics": 1, "paper_table": 1,
                    "per_class_ap": 1, "plot_ap_vs_frequency": 1, "plot_group_ap": 1, "plot_loss_curves": 1,
                    "all": 1}  # fmt: skip
    run_snakemake(tmp_path, configfile, "--cores", "2", *rerun)
    log = (tmp_path / "logs/toy/crt/seed1/train.log").read_text()
    iters = E2E["train"]["max_iters"]
    assert "resuming from" not in log and f"Iter(train) [{iters}/{iters}]" in log

    # Only the OpenImages evaluation (the Challenge metric, grouped AP, the table):
    plan = _job_counts(run_snakemake(tmp_path, configfile, "-n", "all", "-R", "evaluate_openimages").stdout)
    assert plan == {"evaluate_openimages": 3, "grouped_ap": 3, "openimages_table": 1,
                    "plot_openimages_groups": 1, "all": 1}  # fmt: skip

    # Changing an evaluation setting reruns evaluation and the table, never training or inference.
    configfile = write_config(tmp_path, **E2E, evaluation={"max_dets": 100})
    plan = run_snakemake(tmp_path, configfile, "-n", "all")
    rerun = {"evaluate_lvis", "collect_metrics", "paper_table", "per_class_ap", "plot_ap_vs_frequency",
             "plot_group_ap", "all"}  # fmt: skip
    assert set(_job_counts(plan.stdout)) == rerun


def _check_report(report):
    """results/report.html in headless chromium: the workflow graph and the runtimes drawn, each plot shown
    as an image of its own when clicked, both tables shown with their rows, the per-class CSV listed."""
    view = view_report(report, open_categories=["Plots", "Tables"], listed_categories=["Per-class results"])
    assert {"Workflow", "Statistics", "Plots", "Tables", "Per-class results"} <= set(view.menu), view.menu
    for chart in (view.rule_graph, view.runtimes):
        assert chart.shape[0] > 50 and float(chart.std()) > 0.01
    assert sorted(view.entries["Plots"]) == sorted(f"results/toy/plots/{name}.png" for name in PLOTS)
    plots = [view.shown[name] for name in view.entries["Plots"]]
    for plot in plots:  # a loaded PNG, drawn on screen at a readable size, not a blank box
        assert plot.tag == "img" and plot.width > 300 and plot.height > 200, plot.name
        assert plot.pixels.shape[0] > 200 and float(plot.pixels.std()) > 0.05, plot.name
    assert len({plot.pixels.tobytes() for plot in plots}) == len(plots)  # each click showed its own plot
    tables = {Path(name).name: view.shown[name] for name in view.entries["Tables"]}
    assert set(tables) == {"paper_table.html", "openimages_table.html"}
    for name, rows in (("paper_table.html", ROWS), ("openimages_table.html", OI_ROWS)):
        table = tables[name]
        assert table.tag == "iframe" and table.width > 300 and float(table.pixels.std()) > 0.01, name
        lines = table.text.splitlines()
        missing = [row for row in rows if not any(line.startswith(f"{row} ") for line in lines)]
        assert not missing, f"{name}: no row {missing} in {lines}"
    assert " ± " in tables["paper_table.html"].text
    assert view.entries["Per-class results"] == ["results/toy/per_class_ap.csv"]


def _check_per_class(root, baseline_seeds):
    """results/toy/per_class_ap.csv: a row per class with its training counts, a column per method (the
    mean over its seeds)."""
    table = pd.read_csv(root / "results/toy/per_class_ap.csv")
    train = json.loads((root / "resources/toy/annotations/lvis_v1_train.json").read_text())["categories"]
    assert list(table["category_id"]) == sorted(c["id"] for c in train)
    by_id = {c["id"]: c for c in train}
    assert list(table["train_image_count"]) == [by_id[i]["image_count"] for i in table["category_id"]]
    assert list(table["train_instance_count"]) == [by_id[i]["instance_count"] for i in table["category_id"]]
    assert list(table["frequency"]) == [by_id[i]["frequency"] for i in table["category_id"]]
    methods = [m for m in PAPER_ORDER if m in SMALL_CONFIG["methods"]]  # as the paper table's rows
    assert list(table.columns[5:]) == [f"{m} {c}" for m in methods for c in ("AP", "AP (box)")]
    # The mean over the classes that have validation ground truth is the method's AP (of its seeds' mean).
    for column, iou_type in (("baseline AP", "segm"), ("baseline AP (box)", "bbox")):
        seeds_ap = [100 * metrics[iou_type]["AP"] for metrics in baseline_seeds]
        assert table[column].mean() == pytest.approx(float(np.mean(seeds_ap)))


def _check_classifier_gradients(root):
    """Every method's per-class classifier gradients, saved beside its model and in its checkpoints."""
    for method in SMALL_CONFIG["methods"]:
        run = _runs(method)[0]
        saved = torch.load(root / f"results/toy/{run}/train/classifier_gradients.pt", weights_only=True)
        assert saved["pos_grad"].shape == saved["neg_grad"].shape == (saved["num_classes"],)
        assert saved["pos_grad"].sum() > 0 and saved["neg_grad"].sum() > 0
        final = load_checkpoint(root / f"results/toy/{run}/model_final.pth")
        assert torch.equal(final["classifier_gradients"]["pos_grad"], saved["pos_grad"])
        if method.startswith("eqlv2"):  # EQLv2's own statistics are the same sums
            for side in ("pos_grad", "neg_grad"):
                buffer = final["state_dict"][f"roi_head.bbox_head.loss_cls.{side}"].double()
                torch.testing.assert_close(saved[side], buffer, rtol=1e-4, atol=1e-6)
    # A decoupled stage starts its own sums: surgery drops the baseline's.
    surgery = load_checkpoint(root / f"results/toy/{_runs('baseline')[0]}/surgery/model_reset_remove.pth")
    assert "classifier_gradients" not in surgery


def _check_seeded_training(root):
    """Each run trained with its own seed (mmengine's randomness.seed, logged in the runtime environment);
    a decoupled run started from the baseline run of the same seed."""
    for seed in SEEDS:
        log = (root / f"logs/toy/crt/seed{seed}/train.log").read_text()
        assert re.findall(r"^\s*seed: (\d+)$", log, re.MULTILINE) == [str(seed)]
        assert f"Load checkpoint from results/toy/baseline/seed{seed}/surgery/model_reset_remove.pth" in log


def _check_openimages_branch(root):
    """The OpenImages branch's files: the Challenge CSV, the official metrics file, grouped AP, the table."""
    method_dir = root / "results/toy/openimages/r18_eqlv2"
    predictions = (method_dir / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "ImageID,LabelName,Score,XMin,XMax,YMin,YMax" and len(predictions) > 1
    metrics = (method_dir / "metrics.csv").read_text().splitlines()
    classes = (root / "resources/toy/openimages/classes.csv").read_text().splitlines()
    assert metrics[0].startswith("OpenImagesDetectionChallenge_Precision/mAP@0.5IOU,")
    prefix = "OpenImagesDetectionChallenge_PerformanceByCategory/AP@0.5IOU/"
    assert [line.rsplit(",", 1)[0] for line in metrics[1:]] == [prefix + c.split(",")[0] for c in classes]
    grouped = json.loads((method_dir / "grouped_ap.json").read_text())
    assert grouped["mAP"] == pytest.approx(float(metrics[0].split(",")[1]))
    assert len(grouped["groups"]) == 5 and grouped["counts"].endswith("annotations/train.json")
    table = (root / "results/toy/openimages_table.csv").read_text().splitlines()
    assert table[0] == "method,AP,AP1,AP2,AP3,AP4,AP5"
    assert [line.split(",")[0] for line in table[1:]] == OI_ROWS
    assert float(table[3].split(",")[1]) == pytest.approx(round(100 * grouped["mAP"], 1))
