"""Checkpoints load with weights_only=True and an explicit allow-list, and nothing else gets through."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from eqlv2.checkpoint import CHECKPOINT_SAFE_GLOBALS, history_buffer_statistic, load_checkpoint


def _mmengine_like_checkpoint(path):
    """What mmengine's Runner saves: message-hub history buffers with numpy inside."""
    buffer = HistoryBuffer()
    buffer.update(1.5)
    buffer.update(np.float64(2.5))
    torch.save(
        {
            "meta": {"iter": 10, "seed": np.int64(3), "dataset_meta": {"classes": ("a", "b")}},
            "state_dict": {"w": torch.ones(2)},
            "message_hub": {"log_scalars": {"train/loss": buffer}, "runtime_info": {"iter": 10}},
        },
        path,
    )


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / "iter_10.pth"
    _mmengine_like_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # what breaks mmengine's resume on torch >= 2.6
    loaded = load_checkpoint(path)
    buffer = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert buffer.mean() == pytest.approx(2.0)
    assert loaded["meta"]["seed"] == 3


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _ReachesThroughGetattr:
    """A pickle that asks getattr for something other than a HistoryBuffer statistic."""

    def __reduce__(self):
        return (getattr, (np.ndarray, "tofile"))


@pytest.mark.parametrize("payload", [_RunsCode(), _ReachesThroughGetattr()])
def test_arbitrary_code_is_refused(tmp_path, payload):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "x": payload}, path)
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        load_checkpoint(path)


def test_getattr_stand_in_only_hands_out_history_buffer_statistics():
    assert history_buffer_statistic(HistoryBuffer, "mean") is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError):
        history_buffer_statistic(np.ndarray, "tofile")
    assert getattr not in CHECKPOINT_SAFE_GLOBALS


def test_missing_and_truncated_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "absent.pth")
    path = tmp_path / "cut.pth"
    _mmengine_like_checkpoint(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.pth: not a loadable checkpoint"):
        load_checkpoint(path)
