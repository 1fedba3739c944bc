"""Iteration checkpoints are complete or absent, and a resume never starts from a file that is not there."""

from __future__ import annotations

import os

import pytest
from mmengine.config import Config
from mmengine.fileio import get_file_backend

from eqlv2.checkpoint import load_checkpoint
from eqlv2.engine.atomic_backend import BACKEND_NAME, AtomicLocalBackend
from eqlv2.engine.run import latest_checkpoint, write_checkpoints_atomically
from eqlv2.engine.training import train
from eqlv2.io import atomic_link_or_copy


def test_a_write_that_dies_leaves_the_previous_file_and_no_partial_one(tmp_path, monkeypatch):
    backend = get_file_backend(tmp_path, backend_args=dict(backend=BACKEND_NAME))
    assert isinstance(backend, AtomicLocalBackend)
    target = tmp_path / "iter_20.pth"
    backend.put(b"complete checkpoint", target)
    assert target.read_bytes() == b"complete checkpoint"

    def killed(*args):  # the process dies after the bytes are written, before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b"half a ch", target)
    with pytest.raises(KeyboardInterrupt):
        backend.put_text("new text", tmp_path / "last_checkpoint")
    assert target.read_bytes() == b"complete checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_20.pth"]


def test_train_points_the_checkpoint_hook_at_the_atomic_backend_unless_told_otherwise():
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=10))))
    assert write_checkpoints_atomically(cfg)
    assert cfg.default_hooks.checkpoint.backend_args == dict(backend=BACKEND_NAME)
    chosen = Config(dict(default_hooks=dict(checkpoint=dict(backend_args=dict(backend="petrel")))))
    assert not write_checkpoints_atomically(chosen)  # its files may be rewritten: the model is copied
    assert chosen.default_hooks.checkpoint.backend_args == dict(backend="petrel")


def test_resume_falls_back_to_the_newest_iteration_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (5, 10, 40):
        (tmp_path / f"iter_{step}.pth").write_bytes(b"x")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_10.pth"))
    assert latest_checkpoint(tmp_path) == str(tmp_path / "iter_10.pth")  # what mmengine recorded
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_4"))  # cut short while written
    assert latest_checkpoint(tmp_path) == str(tmp_path / "iter_40.pth")
    (tmp_path / "last_checkpoint").unlink()
    assert latest_checkpoint(tmp_path) == str(tmp_path / "iter_40.pth")


def test_a_training_run_writes_its_checkpoints_through_the_atomic_backend(small_toy, tmp_path, monkeypatch):
    written = []
    put = AtomicLocalBackend.put

    def recording_put(self, obj, path):
        written.append(os.path.basename(path))
        put(self, obj, path)

    monkeypatch.setattr(AtomicLocalBackend, "put", recording_put)
    options = {"default_hooks.checkpoint.interval": 2}
    out = train("toy/mask-rcnn_r18_fpn_ce_toy.py", tmp_path / "train", tmp_path / "final.pth",
                data_root=small_toy, max_iters=4, cfg_options=options)  # fmt: skip
    assert written == ["iter_2.pth", "iter_4.pth"]
    assert load_checkpoint(out)["meta"]["iter"] == 4
    # The finished model is the last checkpoint itself, not a second copy of its bytes on disk.
    assert os.path.samefile(out, tmp_path / "train" / "iter_4.pth")


def test_the_finished_model_is_linked_where_it_can_be_and_copied_where_it_cannot(tmp_path, monkeypatch):
    last = tmp_path / "train" / "iter_4.pth"
    last.parent.mkdir()
    last.write_bytes(b"weights")
    linked = atomic_link_or_copy(last, tmp_path / "a" / "final.pth")
    assert os.path.samefile(linked, last)

    def no_links(src, dst):  # a file system without hard links, or another device
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    copied = atomic_link_or_copy(last, tmp_path / "b" / "final.pth")
    assert copied.read_bytes() == b"weights" and not os.path.samefile(copied, last)
    assert sorted(p.name for p in copied.parent.iterdir()) == ["final.pth"]  # no temporary left
