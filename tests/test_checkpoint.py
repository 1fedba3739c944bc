"""Checkpoints load with weights_only=True and an explicit allow-list, and nothing else gets through.

A file that does not load is one line naming it and the reason, without torch's advice to load it unsafely.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import _load_checkpoint as mmengine_load_checkpoint

from eqlv2.checkpoint import (
    CHECKPOINT_SAFE_GLOBALS,
    allow_mmengine_checkpoints,
    history_buffer_statistic,
    load_checkpoint,
)

# What torch's own message says, and an error about a file must not: load it with the safe loading off.
UNSAFE_ADVICE = ("weights_only", "False", "trust")
SYSTEM = f"{os.system.__module__}.{os.system.__name__}"  # how a pickle names os.system: posix.system


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


def _text(path):
    path.write_text("state_dict: not a checkpoint\n")


def _empty(path):
    path.write_bytes(b"")


def _truncated(path, legacy: bool = False):
    """A real checkpoint cut short, as a copy interrupted half-way leaves it."""
    if legacy:
        torch.save({"state_dict": {"w": torch.ones(100)}}, path, _use_new_zipfile_serialization=False)
    else:
        _mmengine_like_checkpoint(path)
    path.write_bytes(path.read_bytes()[:200])


def _saved(payload):
    return lambda path: torch.save({"state_dict": {}, "x": payload}, path)


def _pickled(payload, protocol: int):
    """A plain pickle, not torch.save's zip: what ``torch.load`` reads as its legacy format."""
    return lambda path: path.write_bytes(pickle.dumps({"state_dict": {}, "x": payload}, protocol=protocol))


UNLOADABLE = {
    "text": (_text, "not a zip or pickle file"),
    "empty": (_empty, "the file is empty"),
    "truncated": (_truncated, "a truncated or damaged zip archive"),
    "truncated-legacy": (lambda path: _truncated(path, legacy=True), "a truncated or damaged pickle"),
    "runs-code": (_saved(_RunsCode()), f"it asks for a global outside the allow-list: {SYSTEM}"),
    "runs-code-pickle": (_pickled(_RunsCode(), 2), f"it asks for a global outside the allow-list: {SYSTEM}"),
    "reaches-through-getattr": (
        _saved(_ReachesThroughGetattr()),
        "it asks for getattr(<class 'numpy.ndarray'>, 'tofile'), not a HistoryBuffer statistic",
    ),
    "pickle-protocol-5": (_pickled(1, 5), "it uses pickle opcode 149, which the safe loader does not read"),
}


def _assert_is_the_one_line(message: str, path, reason: str) -> None:
    assert message == f"{path}: not a loadable checkpoint ({reason})"
    assert "\n" not in message and not any(word in message for word in UNSAFE_ADVICE)


@pytest.mark.parametrize("name", UNLOADABLE)
def test_a_file_that_does_not_load_is_one_line_naming_it_and_why(tmp_path, name):
    write, reason = UNLOADABLE[name]
    path = tmp_path / "model.pth"
    write(path)
    with pytest.raises(ValueError) as refused:
        load_checkpoint(path)
    _assert_is_the_one_line(str(refused.value), path, reason)
    assert refused.value.__cause__ is None and refused.value.__context__ is None  # torch's text stays out


def test_mmengine_loads_local_files_through_the_allow_list_and_fails_in_one_line(tmp_path):
    """What ``eqlv2 train`` (load_from, resume) and ``eqlv2 test`` hand mmengine's Runner."""
    allow_mmengine_checkpoints()
    good, bad = tmp_path / "iter_10.pth", tmp_path / "iter_20.pth"
    _mmengine_like_checkpoint(good)
    assert mmengine_load_checkpoint(str(good), map_location="cpu")["meta"]["iter"] == 10
    _saved(_RunsCode())(bad)
    with pytest.raises(ValueError) as refused:
        mmengine_load_checkpoint(str(bad), map_location="cpu")
    _assert_is_the_one_line(str(refused.value), bad, f"it asks for a global outside the allow-list: {SYSTEM}")


def test_getattr_stand_in_only_hands_out_history_buffer_statistics():
    assert history_buffer_statistic(HistoryBuffer, "mean") is HistoryBuffer.mean
    with pytest.raises(pickle.UnpicklingError):
        history_buffer_statistic(np.ndarray, "tofile")
    assert getattr not in CHECKPOINT_SAFE_GLOBALS


def test_a_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth does not exist"):
        load_checkpoint(tmp_path / "absent.pth")
