"""The original project's checkpoints (mmdet 2.3, mmcv 1.x) load into this package's models, or fail."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.registry import init_default_scope

from eqlv2.checkpoint import load_checkpoint
from eqlv2.cli import main
from eqlv2.config import load_run_config
from eqlv2.tools.import_checkpoint import import_checkpoint
from eqlv2.tools.test import test as run_test

LWS = "toy/mask-rcnn_r18_fpn_lws_toy.py"
BASELINE = "toy/mask-rcnn_r18_fpn_ce_toy.py"


def _model(config, data_root):
    cfg = load_run_config(config, data_root, split="test")
    init_default_scope("mmdet")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def _as_original(state_dict, path, prefix=""):
    """What mmcv 1.x's save_checkpoint wrote for the original: its own key names, meta, optimizer."""
    original = OrderedDict()
    for key, value in state_dict.items():
        if key.endswith(".fc_cls.scales"):
            key, value = key.replace(".fc_cls.scales", ".fc_cls.weight_scaler"), value[:, None]
        original[prefix + key] = value.clone()
    meta = {"mmdet_version": "2.3.0", "mmcv_version": "1.0.5", "config": "model = dict(...)",
            "CLASSES": ("a", "b"), "epoch": 12, "iter": 88000, "time": "Tue Dec 15 2020"}  # fmt: skip
    optimizer = {"state": {}, "param_groups": [{"lr": 0.0002, "momentum": 0.9, "params": [0, 1]}]}
    torch.save({"meta": meta, "state_dict": original, "optimizer": optimizer}, path)
    return path


def test_an_lws_checkpoint_keeps_every_weight_and_its_scales(small_toy, tmp_path):
    model = _model(LWS, small_toy)
    with torch.no_grad():
        model.roi_head.bbox_head.fc_cls.scales.uniform_(0.5, 2.0)  # as trained, not the 1.0 init
    source = _as_original(model.state_dict(), tmp_path / "epoch_12.pth", prefix="module.")
    out = import_checkpoint(source, LWS, tmp_path / "model_final.pth", small_toy)
    imported = load_checkpoint(out)
    assert set(imported) == {"meta", "state_dict"}  # the optimizer state is left behind
    assert imported["meta"]["mmdet_version"] == "2.3.0" and imported["meta"]["iter"] == 88000
    expected = model.state_dict()
    assert list(imported["state_dict"]) == list(expected)
    for key, value in expected.items():
        assert torch.equal(imported["state_dict"][key], value), key


def test_an_imported_baseline_runs_inference(small_toy, tmp_path):
    model = _model(BASELINE, small_toy)
    source = _as_original(model.state_dict(), tmp_path / "epoch_12.pth")
    assert main(["import-checkpoint", str(source), "--config", BASELINE, "--data-root", str(small_toy),
                 "--out", str(tmp_path / "model_final.pth")]) == 0  # fmt: skip
    written = run_test(BASELINE, tmp_path / "model_final.pth", tmp_path / "predictions", small_toy)
    assert set(written) == {"bbox", "segm"} and written["bbox"].is_file()


def test_a_checkpoint_that_does_not_fit_is_an_error_naming_the_keys(small_toy, tmp_path, capsys):
    state = _model(BASELINE, small_toy).state_dict()
    del state["roi_head.bbox_head.fc_cls.bias"]
    missing = _as_original(state, tmp_path / "missing.pth")
    args = ["--config", BASELINE, "--data-root", str(small_toy), "--out", str(tmp_path / "out.pth")]
    assert main(["import-checkpoint", str(missing), *args]) == 2
    assert f"{missing}: state_dict does not fit" in capsys.readouterr().err
    state = _model(BASELINE, small_toy).state_dict()
    state["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(1204, 256)  # LVIS v1's classes, not the toy's
    wrong = _as_original(state, tmp_path / "wrong.pth")
    assert main(["import-checkpoint", str(wrong), *args]) == 2
    assert (
        "shape of roi_head.bbox_head.fc_cls.weight (1204, 256) (model: (49, 256))" in capsys.readouterr().err
    )
    assert not (tmp_path / "out.pth").exists()


def test_a_file_without_weights_is_refused(small_toy, tmp_path):
    path = tmp_path / "not_a_checkpoint.pth"
    torch.save({"epoch": 12}, path)
    with pytest.raises(ValueError, match="no 'state_dict'"):
        import_checkpoint(path, BASELINE, tmp_path / "out.pth", small_toy)
