"""``eqlv2 surgery``: the original ``tools/ckpt_surgery.py`` plus mmengine's extra training-state keys.

The checkpoints are small dicts saved with ``torch.save`` that have the top-level layout of an mmengine
0.10 training checkpoint (``meta``, ``state_dict``, ``message_hub`` with a ``HistoryBuffer``,
``optimizer``, ``param_schedulers``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from eqlv2.checkpoint import load_checkpoint
from eqlv2.cli import main
from eqlv2.tools.surgery import surgery

# the run's own training state; the classifier gradients a decoupled stage starts afresh
TRAINING_STATE = ("meta", "optimizer", "message_hub", "param_schedulers", "classifier_gradients")
CLASSIFIER = ("roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_cls.bias")
KEPT = (
    "backbone.conv1.weight",
    "roi_head.bbox_head.shared_fcs.0.weight",
    "roi_head.bbox_head.fc_reg.weight",
    "roi_head.bbox_head.fc_reg.bias",
    "roi_head.mask_head.conv_logits.weight",
)


def _state_dict(with_classifier: bool = True) -> dict[str, torch.Tensor]:
    keys = KEPT + (CLASSIFIER if with_classifier else ())
    return {k: torch.full((2, 3), float(i)) for i, k in enumerate(keys)}


def _save_mmengine_like(path, state_dict=None, **extra):
    buffer = HistoryBuffer()
    buffer.update(0.5)
    checkpoint = {
        "meta": {"iter": 1000, "seed": np.int64(0), "dataset_meta": {"classes": ("a", "b", "c")}},
        "state_dict": _state_dict() if state_dict is None else state_dict,
        "message_hub": {"log_scalars": {"train/loss": buffer}, "runtime_info": {"iter": 1000}},
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(3)}}, "param_groups": [{"lr": 0.02}]},
        "param_schedulers": [{"last_step": 1000}],
        "classifier_gradients": {"num_classes": 3, "pos_grad": torch.ones(3), "neg_grad": torch.ones(3)},
        **extra,
    }
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("method", ["remove", "reset"])
def test_training_state_is_dropped(tmp_path, method, capsys):
    src = _save_mmengine_like(tmp_path / "iter_1000.pth", ema_extra={"kept": torch.zeros(1)})
    out = surgery(src, method, tmp_path / "out")
    assert out == tmp_path / "out" / f"model_reset_{method}.pth"
    result = load_checkpoint(out)
    assert not set(TRAINING_STATE) & set(result)
    assert "ema_extra" in result  # keys it does not know are left alone
    printed = capsys.readouterr().out
    for key in TRAINING_STATE:
        assert f"dropped top-level key: {key}" in printed
    assert not list((tmp_path / "out").glob(".*.part"))


def test_reset_keeps_the_state_dict(tmp_path):
    src = _save_mmengine_like(tmp_path / "ckpt.pth")
    result = load_checkpoint(surgery(src, "reset", tmp_path))
    expected = _state_dict()
    assert list(result["state_dict"]) == list(expected)
    for key, value in expected.items():
        assert torch.equal(result["state_dict"][key], value)


def test_remove_drops_every_fc_cls_key_and_reports_it(tmp_path, capsys):
    state_dict = _state_dict()
    state_dict["roi_head.bbox_head.fc_cls.scales"] = torch.ones(4)  # an LWS head's
    src = _save_mmengine_like(tmp_path / "ckpt.pth", state_dict=state_dict)
    result = load_checkpoint(surgery(src, "remove", tmp_path))
    assert list(result["state_dict"]) == list(KEPT)
    printed = capsys.readouterr().out
    for key in (*CLASSIFIER, "roi_head.bbox_head.fc_cls.scales"):
        assert f"dropped state_dict key: {key}" in printed


def test_source_is_not_modified(tmp_path):
    src = _save_mmengine_like(tmp_path / "ckpt.pth")
    before = src.read_bytes()
    surgery(src, "remove", tmp_path)
    assert src.read_bytes() == before


def test_cli_writes_the_file(tmp_path, capsys):
    src = _save_mmengine_like(tmp_path / "ckpt.pth")
    out_dir = tmp_path / "r50_1x"
    rc = main(["surgery", "--ckpt-path", str(src), "--method", "remove", "--output-dir", str(out_dir)])
    assert rc == 0
    assert (out_dir / "model_reset_remove.pth").is_file()
    assert str(out_dir / "model_reset_remove.pth") in capsys.readouterr().out


def _cli_error(argv, capsys) -> str:
    rc = main(argv)
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("eqlv2 surgery: error: ")
    return err[0]


def test_cli_without_state_dict(tmp_path, capsys):
    src = tmp_path / "weights_only.pth"
    torch.save({"meta": {}, "model": _state_dict()}, src)
    out_dir = tmp_path / "out"
    msg = _cli_error(
        ["surgery", "--ckpt-path", str(src), "--method", "reset", "--output-dir", str(out_dir)], capsys
    )
    assert str(src) in msg and "state_dict" in msg
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_cli_remove_without_classifier(tmp_path, capsys):
    src = _save_mmengine_like(tmp_path / "backbone.pth", state_dict=_state_dict(with_classifier=False))
    out_dir = tmp_path / "out"
    msg = _cli_error(
        ["surgery", "--ckpt-path", str(src), "--method", "remove", "--output-dir", str(out_dir)], capsys
    )
    assert str(src) in msg and "fc_cls" in msg
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_cli_missing_and_corrupt_files(tmp_path, capsys):
    missing = tmp_path / "nope.pth"
    msg = _cli_error(
        ["surgery", "--ckpt-path", str(missing), "--method", "reset", "--output-dir", str(tmp_path)], capsys
    )
    assert str(missing) in msg
    corrupt = tmp_path / "half.pth"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    msg = _cli_error(
        ["surgery", "--ckpt-path", str(corrupt), "--method", "reset", "--output-dir", str(tmp_path)], capsys
    )
    assert str(corrupt) in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half.pth"]


def test_cli_rejects_unknown_method(tmp_path):
    src = _save_mmengine_like(tmp_path / "ckpt.pth")
    with pytest.raises(SystemExit) as exc:
        main(["surgery", "--ckpt-path", str(src), "--method", "shrink"])
    assert exc.value.code == 2
    with pytest.raises(ValueError, match="unknown method"):
        surgery(src, "shrink", tmp_path)


def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    src = _save_mmengine_like(tmp_path / "ckpt.pth")
    out_dir = tmp_path / "out"

    def broken_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        surgery(src, "reset", out_dir)
    assert list(out_dir.iterdir()) == []
