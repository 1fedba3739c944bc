"""Several runs in one Python process (a script, a test session) keep their logs apart."""

from __future__ import annotations

import json
import shutil

from eqlv2.engine.training import train

CONFIG = "toy/mask-rcnn_r18_fpn_ce_toy.py"


def test_each_run_logs_into_its_own_work_dir_even_when_an_earlier_ones_is_gone(small_toy, tmp_path):
    # mmengine hands a later Runner the Visualizer an earlier one created under the same name, and
    # mmdet's configs all use one name: the second run logged into the first run's vis_data, and
    # failed once that folder had been removed.
    options = {"default_hooks.checkpoint.interval": 2, "default_hooks.logger.interval": 1}
    for name in ("first", "second"):
        train(CONFIG, tmp_path / name, tmp_path / f"{name}.pth", data_root=small_toy, max_iters=2,
              cfg_options=options)  # fmt: skip
        (scalars,) = (tmp_path / name).glob("*/vis_data/scalars.json")
        assert [json.loads(line)["iter"] for line in scalars.read_text().splitlines()] == [1, 2]
        assert (scalars.parent / "config.py").is_file()
        if name == "first":
            shutil.rmtree(tmp_path / name)
