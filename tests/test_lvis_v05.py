"""LVIS v0.5 (1230 classes): the eight paper configs of ``config/lvis_v0.5.yaml``, each trained two
iterations on a CPU on a generated 1230-class set (the CPU-sized run of test_real_configs: one epoch of 4
images at 2 per step, or 2 iterations of the decoupled schedule), and the v0.5 validation set predicted
and evaluated.

What v0.5 changes against v1, and what a wrong config would get wrong silently: mmdet's LVISV05Dataset
(COCO 2014 file names mapped to the 2017 folders: train images under train2017/, val under val2017/), 1230
classes in every head and loss (EQL with its v0.5 lambda 0.00177, EQLv2's statistics, GroupSoftmax's
groups), and an evaluation on v0.5's validation file that agrees with the `lvis` package.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mmdet.datasets import LVISV05Dataset
from mmdet.datasets.samplers import ClassAwareSampler
from mmengine.dataset import ClassBalancedDataset

from eqlv2.checkpoint import load_checkpoint
from eqlv2.evaluation.lvis import evaluate_lvis, load_results
from eqlv2.models.losses.group_softmax import group_layout
from eqlv2.tools.surgery import surgery
from eqlv2.tools.test import test as predict

from .real_config_helpers import LVIS_V05_NUM_CLASSES, make_lvis_v05
from .test_real_configs import (
    DECOUPLED,
    ITERATION_BASED,
    TRAINABLE,
    Run,
    assert_two_finite_iterations,
    lvis_options,
    train_in_process,
)

pytestmark = pytest.mark.slow

V05 = "lvis_v0.5/mask-rcnn_r50_fpn_{}_ms-1x_lvis-v0.5.py"
V05_CONFIGS = ["ce", "rfs", "eql-loss", "eqlv2-loss", "eqlv2-loss_rfs", "crt", "lws", "bags"]
SIGMOID = {"eql-loss": 0, "eqlv2-loss": 1, "eqlv2-loss_rfs": 1}  # fc_cls outputs beyond the classes
C = LVIS_V05_NUM_CLASSES


@pytest.fixture(scope="module")
def v05_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lvis_v0_5")
    make_lvis_v05(root, "train")
    make_lvis_v05(root, "val")
    return root


@pytest.fixture(scope="module")
def v05_baseline(v05_root, tmp_path_factory) -> Run:
    """The v0.5 CE baseline, trained once: its own test, the decoupled stages' start and the predictor."""
    with pytest.MonkeyPatch.context() as mp:
        return train_in_process(mp, V05.format("ce"), v05_root, tmp_path_factory.mktemp("ce_v05"),
                                lvis_options("ce"))  # fmt: skip


def innermost(dataset):
    return dataset.dataset if isinstance(dataset, ClassBalancedDataset) else dataset


@pytest.mark.parametrize("method", V05_CONFIGS, ids=[V05.format(m) for m in V05_CONFIGS])
def test_lvis_v05_config(method, v05_root, v05_baseline, tmp_path, monkeypatch):
    if method == "ce":
        run = v05_baseline
    else:
        kwargs = {"max_iters": 2} if method in ITERATION_BASED else {}
        if method in DECOUPLED:
            kwargs["load_from"] = surgery(v05_baseline.out, DECOUPLED[method], tmp_path / "surgery")
        run = train_in_process(monkeypatch, V05.format(method), v05_root, tmp_path / "work",
                               lvis_options(method), **kwargs)  # fmt: skip
    assert_two_finite_iterations(run)

    # The data: v0.5's class, and its COCO 2014 names read from the 2017 folder.
    loader = run.runner.train_dataloader
    assert isinstance(loader.dataset, ClassBalancedDataset) == ("rfs" in method)
    if "rfs" in method:
        assert loader.dataset.oversample_thr == 0.001
    dataset = innermost(loader.dataset)
    assert type(dataset) is LVISV05Dataset and len(dataset.metainfo["classes"]) == C
    paths = sorted(Path(dataset.get_data_info(i)["img_path"]) for i in range(len(dataset)))
    assert paths == sorted((v05_root / "train2017").glob("*.jpg"))
    assert isinstance(loader.sampler, ClassAwareSampler) == (method in ITERATION_BASED)

    # The model: 1230 classes in both heads and in the loss.
    model = getattr(run.runner.model, "module", run.runner.model)
    bbox_head, mask_head = model.roi_head.bbox_head, model.roi_head.mask_head
    assert bbox_head.num_classes == C and mask_head.num_classes == C
    final = run.state()
    head = "roi_head.bbox_head."
    if method in SIGMOID:
        assert final[f"{head}fc_cls.weight"].shape[0] == C + SIGMOID[method]
    loss = bbox_head.loss_cls
    if method == "eql-loss":
        assert (loss.num_classes, loss.lambda_) == (C, 0.00177)
        assert loss.tail.shape == (C,)
        assert loss.ann_file == str(v05_root / "annotations/lvis_v0.5_train.json")
    if method.startswith("eqlv2"):
        for buffer in ("pos_grad", "neg_grad", "pos_neg"):
            assert final[f"{head}loss_cls.{buffer}"].shape == (C,)
        assert final[f"{head}loss_cls.pos_grad"].sum() > 0
    if method == "bags":
        categories = json.loads((v05_root / "annotations/lvis_v0.5_train.json").read_text())["categories"]
        counts = [c["instance_count"] for c in sorted(categories, key=lambda c: c["id"])]
        sizes = group_layout(counts, loss.bin_split)["group_size"]
        # the groups of the run's own counts, each with its "others" channel, background in the last
        assert loss.group_size.tolist() == sizes.tolist() and int(sizes.sum()) == C + 1 + loss.num_groups
        assert final[f"{head}fc_cls.weight"].shape[0] == C + 1 + loss.num_groups
    if method in DECOUPLED:
        start = load_checkpoint(kwargs["load_from"])["state_dict"]
        moved = [k for k in final if k.startswith(TRAINABLE[method])]
        assert moved, f"no state_dict key of {method} is trainable"
        for key, value in final.items():
            if key in start and not key.startswith(TRAINABLE[method]):
                assert torch.equal(value, start[key]), f"frozen {key} changed"


def test_lvis_v05_validation_is_predicted_and_evaluated_as_the_lvis_package_does(v05_root, v05_baseline,
                                                                                 tmp_path):  # fmt: skip
    options = {"test_dataloader.dataset.pipeline.1.scale": (200, 144), "test_dataloader.num_workers": 0,
               "test_dataloader.persistent_workers": False}  # fmt: skip
    files = predict(V05.format("ce"), v05_baseline.out, tmp_path / "predictions", v05_root, options)
    val = v05_root / "annotations/lvis_v0.5_val.json"
    for iou_type in ("bbox", "segm"):
        results = load_results(files[iou_type])
        # every val image (ids 101-104) was read from val2017/ and scored in all 1230 classes' id space
        assert {r["image_id"] for r in results} == {101, 102, 103, 104}
        assert {r["category_id"] for r in results} <= set(range(1, C + 1))
        ours = evaluate_lvis(val, files[iou_type], iou_type, 300, "fast", 0, 0)
        reference = evaluate_lvis(val, files[iou_type], iou_type, 300, "lvis", 0, 0)
        assert ours.keys() == reference.keys() and "APr" in ours
        for key, value in reference.items():
            assert ours[key] == pytest.approx(value, abs=1e-9), key
