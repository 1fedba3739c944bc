"""examples/my_loss/, the template of a method of one's own: its loss by hand-computed cases, its config
from any working directory, its workflow entry planned and refused, and (slow) the whole small setting."""

from __future__ import annotations

import csv
import importlib
import math
import re

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from .conftest import REPO
from .workflow_helpers import SMALL_CONFIG, run_snakemake, shell_command, write_config

EXAMPLE = REPO / "examples" / "my_loss"
MODEL_CONFIG = EXAMPLE / "mask-rcnn_r18_fpn_roi-focal-loss_toy.py"
WORKFLOW_CONFIG = EXAMPLE / "config.yaml"


@pytest.fixture(scope="module")
def my_loss(tmp_path_factory):
    """The example's module, imported the way a run imports it: by loading its config elsewhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("elsewhere"))
        Config.fromfile(str(MODEL_CONFIG))
    return importlib.import_module("my_loss")


def test_focal_loss_of_one_roi_by_hand(my_loss):
    # p = 0.5, 0.75, 0.25; the RoI is of class 1 (the target), channel 2 is the background.
    logits = torch.tensor([[0.0, math.log(3), -math.log(3)]])
    loss = my_loss.RoIFocalLoss(num_classes=2)(logits, torch.tensor([1]))
    # alpha_t (1 - p_t)^2 (-log p_t): 0.75 * 0.25 * ln 2 + 0.25 * 0.0625 * ln(4/3) + 0.75 * 0.0625 * ln(4/3)
    assert loss.item() == pytest.approx(0.1875 * math.log(2) + 0.0625 * math.log(4 / 3), rel=1e-6)


def test_gamma_0_and_alpha_half_is_half_the_sigmoid_bce_and_label_weights_count(my_loss):
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 6, requires_grad=True), torch.tensor([0, 5, 2, 5])
    loss_fn = my_loss.RoIFocalLoss(num_classes=5, gamma=0.0, alpha=0.5)
    bce = F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, 6).float(), reduction="none").sum(1)
    weights = torch.tensor([1.0, 1.0, 0.0, 1.0])  # the third RoI left out, the mean still over avg_factor
    loss = loss_fn(logits, labels, weights, avg_factor=4)
    assert loss.item() == pytest.approx(0.5 * (bce * weights).sum().item() / 4, rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[2] == 0) and torch.all(logits.grad[[0, 1, 3]] != 0)


def test_test_scores_and_accuracy_use_the_background_channel(my_loss):
    loss_fn = my_loss.RoIFocalLoss(num_classes=2)
    logits = torch.tensor([[0.0, math.log(3), -math.log(3)], [0.0, 0.0, math.log(3)]])
    scores = loss_fn.get_activation(logits)
    assert scores[0].tolist() == pytest.approx([0.5 * 0.75, 0.75 * 0.75, 0.25])
    accuracy = loss_fn.get_accuracy(logits, torch.tensor([1, 2]))  # a class-1 RoI, a background RoI
    assert accuracy["acc_objectness"].item() == 100.0  # logit 2 < 0 for the first, > 0 for the second
    assert accuracy["acc_classes"].item() == 100.0  # argmax of the first RoI's two class logits is 1


@pytest.mark.parametrize("where", ["repository", "elsewhere"])
def test_config_inherits_the_baseline_and_imports_the_loss_from_any_directory(where, my_loss, tmp_path,
                                                                               monkeypatch):  # fmt: skip
    monkeypatch.chdir(REPO if where == "repository" else tmp_path)
    path = MODEL_CONFIG.relative_to(REPO) if where == "repository" else MODEL_CONFIG
    cfg = Config.fromfile(str(path))
    baseline = Config.fromfile(str(REPO / "src/eqlv2/configs/toy/mask-rcnn_r18_fpn_ce_toy.py"))
    assert cfg.model.roi_head.bbox_head.loss_cls == {
        "type": "RoIFocalLoss", "num_classes": 48, "gamma": 2.0, "alpha": 0.25}  # fmt: skip
    assert cfg.model.backbone == baseline.model.backbone and cfg.train_cfg == baseline.train_cfg
    assert "sys" not in cfg  # the path set-up leaves nothing in the config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    head = MODELS.build(cfg.model.roi_head.bbox_head)
    head.init_weights()
    assert isinstance(head.loss_cls, my_loss.RoIFocalLoss)
    assert head.fc_cls.out_features == 49  # 48 classes and the background, from get_cls_channels
    assert head.fc_cls.bias.detach() == pytest.approx(torch.full((49,), -math.log(99)), abs=1e-5)


def test_workflow_entry_adds_a_row_found_from_another_directory(tmp_path):
    configfile = write_config(tmp_path, openimages=None)
    plan = run_snakemake(tmp_path, configfile, str(WORKFLOW_CONFIG), "-n", "-p", "all").stdout
    train = shell_command(plan, "results/toy/roi_focal/model_final.pth")
    assert train.startswith(f"{{ eqlv2 train {MODEL_CONFIG} ")  # the repository's file, from tmp_path
    predict = shell_command(plan, "results/toy/roi_focal/predictions.bbox.json")
    assert predict.startswith(f"{{ eqlv2 test {MODEL_CONFIG} ")
    table = shell_command(plan, "results/toy/paper_table.md")
    assert "roi_focal=results/toy/roi_focal/metrics.json" in table
    assert "--own 'roi_focal=RoI Focal Loss' --md" in table  # end to end: no --decoupled


def test_a_decoupled_own_method_is_marked_so(tmp_path):
    methods = {"baseline": SMALL_CONFIG["methods"]["baseline"],
               "mine": {"name": "Mine", "config": "toy/mask-rcnn_r18_fpn_crt_toy.py",
                        "init": {"from": "baseline", "surgery": "remove"}}}  # fmt: skip
    configfile = write_config(tmp_path, methods=methods, openimages=None)
    plan = run_snakemake(tmp_path, configfile, "-n", "-p", "all").stdout
    assert "--own mine=Mine --decoupled mine --md" in shell_command(plan, "results/toy/paper_table.md")


@pytest.mark.parametrize(
    ("entry", "named"),
    [({"softmax": {"config": "x.py"}},
      "methods: 'softmax' is not one of the known methods (baseline, eql, rfs, lws, crt, bags, eqlv2, "
      "eqlv2_rfs, seesaw, seesaw_rfs, fed_loss, ecm) and has no name (a method of one's own needs one"),
     ({"eqlv2": {"config": "x.py", "name": "Mine"}},
      "methods.eqlv2.name: 'eqlv2' is a known method, whose row label is 'EQLv2'"),
     ({"mine": {"config": "x.py", "name": "EQLv2"}},
      "methods.mine.name: 'EQLv2' is already the row label of the known method eqlv2"),
     ({"my-loss": {"config": "x.py", "name": "Mine"}}, "methods: 'my-loss' does not match"),
     ({"mine": {"config": "x.py", "name": ""}}, "methods.mine.name: '' should be non-empty")],
)  # fmt: skip
def test_a_wrong_entry_of_ones_own_stops_the_run_in_one_line(tmp_path, entry, named):
    configfile = write_config(tmp_path, methods=entry, openimages=None)
    result = run_snakemake(tmp_path, configfile, "-n", "all", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "ConfigError" in output and str(configfile) in output
    assert named in output


@pytest.mark.slow
def test_example_runs_through_the_small_setting(tmp_path):
    """CI's small setting reduced to the baseline and the example: trained, evaluated, in the table.

    Reduced also to 20 iterations and half the validation images (30, two per class): inference of the
    weak models (300 detections with masks per image) was half of the run's time on 2 cores.
    """
    configfile = write_config(
        tmp_path,
        toy={**SMALL_CONFIG["toy"], "num_val_images": 30, "val_images_per_class": 2},
        methods={"baseline": SMALL_CONFIG["methods"]["baseline"]},
        openimages=None,
        train={"max_iters": 20, "cfg_options": ["default_hooks.checkpoint.interval=20"]},
    )
    run_snakemake(tmp_path, configfile, str(WORKFLOW_CONFIG), "--cores", "2", "all")

    with open(tmp_path / "results/toy/paper_table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["method"] for row in rows] == ["Baseline", "RoI Focal Loss"]
    own = rows[1]
    assert (own["end2end"], own["note"], rows[0]["note"]) == ("√", "own method", "")
    for column in ("AP", "APr", "APc", "APf", "AP (box)", "AP ±"):
        assert math.isfinite(float(own[column])) and 0 <= float(own[column]) <= 100, (column, own)
    assert "| RoI Focal Loss |" in (tmp_path / "results/toy/paper_table.md").read_text()
    # The example's loss was built and trained: its line at build time, its accuracies in the iteration log.
    log = (tmp_path / "logs/toy/roi_focal/train.log").read_text()
    assert "build RoIFocalLoss, gamma: 2.0, alpha: 0.25" in log
    last_iteration = r"Iter\(train\) \[20/20\].* loss_cls: \S+ .*acc_objectness: \S+.*acc_classes: "
    assert re.search(last_iteration, log), log
    assert "build RoIFocalLoss" not in (tmp_path / "logs/toy/baseline/train.log").read_text()
