"""The toy Seesaw Loss config: mmdet's SeesawLoss and NormedLinear, sized from the toy's class count.

The LVIS v1 Seesaw configs are trained in tests/test_real_configs.py; this is the embedded default's one,
2 iterations through ``eqlv2 train``'s library call on the small toy.  SeesawLoss keeps its own
``num_classes`` beside the head's, and a mismatch fails only at the first forward pass (mmdet asserts the
C + 2 outputs), so the config's value is checked against the data before training too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from eqlv2.checkpoint import load_checkpoint
from eqlv2.config import load_run_config
from eqlv2.datasets.toy import CATEGORY_NAMES
from eqlv2.engine.training import train

TOY = "toy/mask-rcnn_r18_fpn_seesaw-loss_toy.py"


def test_the_toy_config_is_mmdets_seesaw_with_the_toys_class_count(small_toy: Path) -> None:
    head = load_run_config(TOY, small_toy).model.roi_head.bbox_head
    assert head.type == "Shared2FCBBoxHead"  # the baseline's head, as in mmdet's Seesaw configs
    assert head.cls_predictor_cfg == {"type": "NormedLinear", "tempearture": 20}
    assert head.loss_cls == {"type": "SeesawLoss", "p": 0.8, "q": 2.0, "num_classes": 48, "loss_weight": 1.0}
    assert head.num_classes == len(CATEGORY_NAMES) == 48


def test_the_toy_config_trains_two_iterations(small_toy: Path, tmp_path: Path) -> None:
    options = {"visualizer.name": "visualizer_seesaw_toy", "default_hooks.logger.interval": 1}
    out = train(
        TOY, tmp_path / "train", tmp_path / "final.pth", data_root=small_toy, max_iters=2, cfg_options=options
    )
    checkpoint = load_checkpoint(out)
    assert checkpoint["meta"]["iter"] == 2
    state = checkpoint["state_dict"]
    assert state["roi_head.bbox_head.fc_cls.weight"].shape == (48 + 2, 256)  # classes, then objectness
    # Seesaw's class counts, background last, saw every sampled RoI: 2 iterations x 4 images x 64 RoIs.
    counts = state["roi_head.bbox_head.loss_cls.cum_samples"]
    assert counts.shape == (48 + 1,)
    assert counts.sum() == 2 * 4 * 64
    assert counts[:-1].sum() > 0 and counts[-1] > 0
    (scalars,) = (tmp_path / "train").glob("*/vis_data/scalars.json")
    rows = [json.loads(line) for line in scalars.read_text().splitlines() if '"loss"' in line]
    assert [r["iter"] for r in rows] == [1, 2]
    for row in rows:  # SeesawLoss returns its two terms instead of one loss_cls
        assert "loss_cls" not in row
        assert math.isfinite(row["loss_cls_classes"]) and row["loss_cls_classes"] > 0
        assert math.isfinite(row["loss_cls_objectness"]) and row["loss_cls_objectness"] > 0
