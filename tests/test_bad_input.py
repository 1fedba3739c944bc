"""Bad input stops with one line naming the file and the field, a non-zero exit, and no output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CONFIG = "toy/mask-rcnn_r18_fpn_ce_toy.py"
# setuptools' deprecation warning for mmengine's `import pkg_resources`, printed to stderr as a verb builds
# a Runner: the environment's, not the error's, and it would make "exactly one line" untestable.
QUIET_IMPORTS = {**os.environ, "PYTHONWARNINGS": "ignore:pkg_resources is deprecated"}
UNSAFE_ADVICE = ("weights_only", "False", "trust")  # torch's advice on a file it refused, never relayed


@pytest.fixture
def toy_copy(small_toy, tmp_path) -> Path:
    root = tmp_path / "toy"
    shutil.copytree(small_toy, root)
    return root


def _eqlv2(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eqlv2", *args], capture_output=True, text=True)


def _train(root: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return _eqlv2("train", CONFIG, "--data-root", str(root), "--work-dir", str(tmp_path / "work"),
                  "--out", str(tmp_path / "model.pth"), "--max-iters", "4", *extra)  # fmt: skip


def _error_line(result: subprocess.CompletedProcess, verb: str = "train") -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"eqlv2 {verb}: error: "), result.stderr[-2000:]
    return last


def test_malformed_annotation_file(toy_copy, tmp_path):
    ann = toy_copy / "annotations/lvis_v1_train.json"
    ann.write_text(ann.read_text()[:1000])
    line = _error_line(_train(toy_copy, tmp_path))
    assert str(ann) in line and "not valid JSON" in line
    assert not (tmp_path / "model.pth").exists()


def test_annotation_file_without_categories(toy_copy, tmp_path):
    ann = toy_copy / "annotations/lvis_v1_train.json"
    doc = json.loads(ann.read_text())
    del doc["categories"]
    ann.write_text(json.dumps(doc))
    line = _error_line(_train(toy_copy, tmp_path))
    assert str(ann) in line and "'categories'" in line


def test_missing_annotation_file(toy_copy, tmp_path):
    (toy_copy / "annotations/lvis_v1_train.json").unlink()
    line = _error_line(_train(toy_copy, tmp_path))
    assert "lvis_v1_train.json does not exist" in line


def test_class_count_that_disagrees_with_the_data(toy_copy, tmp_path):
    line = _error_line(_train(toy_copy, tmp_path, "--cfg-options", "model.roi_head.bbox_head.num_classes=10"))
    assert "has 48 categories" in line and "model.roi_head.bbox_head.num_classes=10" in line


def test_missing_image(toy_copy, tmp_path):
    victim = sorted((toy_copy / "train2017").iterdir())[5]
    victim.unlink()
    line = _error_line(_train(toy_copy, tmp_path))
    assert "lvis_v1_train.json" in line and str(victim) in line and "1 of 300 images are missing" in line


def test_initial_weights_of_the_wrong_shape(toy_copy, tmp_path):
    bad = tmp_path / "model_reset_remove.pth"
    torch.save({"state_dict": {"roi_head.bbox_head.fc_reg.weight": torch.zeros(3, 3)}}, bad)
    line = _error_line(_train(toy_copy, tmp_path, "--load-from", str(bad)))
    assert str(bad) in line and "roi_head.bbox_head.fc_reg.weight" in line and "(3, 3)" in line
    assert not (tmp_path / "model.pth").exists()


@pytest.mark.slow
def test_non_finite_loss_stops_training(toy_copy, tmp_path):
    """An absurd learning rate blows the loss up; training stops at once, leaving no final model."""
    result = _train(toy_copy, tmp_path, "--cfg-options", "optim_wrapper.optimizer.lr=1e8",
                    "optim_wrapper.clip_grad=None")  # fmt: skip
    line = _error_line(result)
    assert "non-finite loss at iteration" in line and str(tmp_path / "work") in line
    assert not (tmp_path / "model.pth").exists()


def test_surgery_on_a_checkpoint_without_a_classifier(tmp_path):
    ckpt = tmp_path / "backbone_only.pth"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}}, ckpt)
    line = _error_line(_eqlv2("surgery", "--ckpt-path", str(ckpt), "--method", "remove",
                              "--output-dir", str(tmp_path / "out")), verb="surgery")  # fmt: skip
    assert str(ckpt) in line and "fc_cls" in line
    assert not (tmp_path / "out" / "model_reset_remove.pth").exists()


def _not_a_checkpoint(path: Path) -> Path:
    path.write_text("model weights: see the wiki\n")
    return path


def _truncated_checkpoint(path: Path) -> Path:
    """A real checkpoint, its classifier included, cut short as an interrupted copy leaves it."""
    torch.save({"meta": {"iter": 4}, "state_dict": {"roi_head.bbox_head.fc_cls.weight": torch.zeros(49, 8)}},
               path)  # fmt: skip
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _code_running_checkpoint(path: Path) -> Path:
    torch.save({"state_dict": {}, "hook": _RunsCode()}, path)
    return path


SYSTEM = f"{os.system.__module__}.{os.system.__name__}"  # how a pickle names os.system: posix.system
BAD_CHECKPOINTS = {
    "text": (_not_a_checkpoint, "not a zip or pickle file"),
    "truncated": (_truncated_checkpoint, "a truncated or damaged zip archive"),
    "runs-code": (_code_running_checkpoint, f"it asks for a global outside the allow-list: {SYSTEM}"),
}


def _checkpoint_verb(verb: str, ckpt: Path, data_root: Path, out: Path) -> list[str]:
    """The arguments of each verb that loads a checkpoint, given ``ckpt``, writing under ``out``."""
    if verb == "surgery":
        return ["surgery", "--ckpt-path", str(ckpt), "--method", "remove", "--output-dir", str(out)]
    if verb == "import-checkpoint":
        return ["import-checkpoint", str(ckpt), "--config", CONFIG, "--out", str(out / "imported.pth")]
    if verb == "plot":  # a classifier_gradients.pt loads as a checkpoint does
        train_ann = data_root / "annotations/lvis_v1_train.json"
        return ["plot", "gradient-ratio", "--inputs", f"baseline={ckpt}", "--train-ann", str(train_ann),
                "--out", str(out / "ratio.png")]  # fmt: skip
    return ["test", CONFIG, "--checkpoint", str(ckpt), "--data-root", str(data_root),
            "--out-prefix", str(out / "predictions")]  # fmt: skip


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
@pytest.mark.parametrize("verb", ["surgery", "import-checkpoint", "test", "plot"])
def test_a_file_that_is_not_a_loadable_checkpoint_is_one_line(verb, kind, small_toy, tmp_path):
    """``eqlv2 test`` loads through mmengine's Runner, the others through eqlv2.checkpoint: the same line."""
    write, reason = BAD_CHECKPOINTS[kind]
    ckpt, out = write(tmp_path / "model_final.pth"), tmp_path / "out"
    command = [sys.executable, "-m", "eqlv2", *_checkpoint_verb(verb, ckpt, small_toy, out)]
    result = subprocess.run(command, capture_output=True, text=True, env=QUIET_IMPORTS)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        f"eqlv2 {verb}: error: {ckpt}: not a loadable checkpoint ({reason})"
    ]
    assert not any(word in result.stderr for word in UNSAFE_ADVICE)
    assert not list(out.rglob("*"))  # nothing written, not even a partial result
