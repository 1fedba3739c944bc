"""Mixed precision (`train.amp: true`, `eqlv2 train --amp`): mmengine's AmpOptimWrapper, losses in float32.

Under ``torch.autocast`` the classifier's logits arrive in float16 (``--amp`` on a GPU) or bfloat16.  The
losses of this package compute their weights, reductions and EQLv2's gradient statistics in float32 from
those logits, as the original did in its float32 runs: a bfloat16 EQLv2 weight ``1 + alpha * (1 - q)``
keeps 8 bits of mantissa, a bfloat16 count of kept RoIs stops being exact above 256, and float16 has 11
bits but overflows above 65504 and flushes values below 6e-8 to zero, so a confident logit's ``1 - p``
or ``exp(z)`` is lost.  torch's CPU autocast runs matmuls in either dtype, so both are tested here; it
casts the same ops to the half dtype as CUDA's does, though it keeps fewer of the others in float32
(softmax, pow and log stay in the half dtype on the CPU), which only mmdet's Seesaw Loss notices.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from eqlv2.config import resolve_config
from eqlv2.engine.classifier_gradients import ClassifierGradients
from eqlv2.engine.precision import use_amp_optim_wrapper

from .conftest import REPO
from .launch_helpers import eqlv2_command, eqlv2_env
from .workflow_helpers import env

EQLV2_TOY = "toy/mask-rcnn_r18_fpn_eqlv2-loss_toy.py"
SEESAW_TOY = "toy/mask-rcnn_r18_fpn_seesaw-loss_toy.py"
C = 3
BG = C
OURS = ["EQLv2", "EQL", "GroupSoftmax", "FederatedLoss"]
HALF = pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])


def _write_ann(path: Path) -> str:
    """Three classes with the fields EQL, GroupSoftmax and the Federated Loss read, in 10 training images."""
    categories = [
        {"id": 1, "name": "a", "image_count": 8, "instance_count": 50},
        {"id": 2, "name": "b", "image_count": 2, "instance_count": 3},
        {"id": 3, "name": "c", "image_count": 1, "instance_count": 2000},
    ]
    annotations = [{"id": i, "image_id": i, "category_id": 1} for i in range(1, 11)]
    path.write_text(json.dumps({"categories": categories, "annotations": annotations, "images": []}))
    return str(path)


def _build(kind: str, ann: str):
    """The loss as the toy configs set it up, on C classes (the Federated Loss draws 1 class beyond the
    ground truth's, so that its subset matters; two losses built alike draw alike)."""
    configs = {
        "EQLv2": dict(type="EQLv2", num_classes=C),
        "EQL": dict(type="EQL", num_classes=C, lambda_=0.25, ann_file=ann),
        "GroupSoftmax": dict(type="GroupSoftmax", num_classes=C, ann_file=ann),
        "FederatedLoss": dict(type="FederatedLoss", num_classes=C, ann_file=ann, fed_loss_num_classes=2),
    }
    return MODELS.build(configs[kind])


def _autocast_logits(loss) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, a classifier and labels; returns (features, labels, the classifier's weight)."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(300, 16, generator=gen)
    weight = torch.randn(loss.get_cls_channels(C), 16, generator=gen, requires_grad=True)
    labels = torch.randint(0, C + 1, (300,), generator=gen)
    labels[:4] = torch.tensor([0, 1, 2, BG])
    return features, labels, weight


def _confident(logits: torch.Tensor) -> torch.Tensor:
    """The logits moved to |z| of 20 to 30, each up or down at random, still in the autocast dtype: where a
    float16 sigmoid is 0 or 1 (``1 - p``, ``p`` below 6e-8) and a float16 ``exp(z)`` is inf."""
    gen = torch.Generator().manual_seed(1)
    signs = torch.randint(0, 2, logits.shape, generator=gen) * 2 - 1
    spread = logits / logits.detach().abs().max() * 5  # in [-5, 5]
    return (spread + 25 * signs).to(logits.dtype)


def _assert_statistics_equal(ours, reference) -> None:
    for stat in ("pos_grad", "neg_grad", "pos_neg"):
        theirs = getattr(reference, stat)
        assert getattr(ours, stat).dtype == torch.float32
        assert torch.equal(getattr(ours, stat), theirs), stat


@HALF
@pytest.mark.parametrize("confident", [False, True], ids=["logits", "confident-logits"])
@pytest.mark.parametrize("kind", OURS)
def test_under_autocast_the_loss_is_float32_and_that_of_the_logits_in_float32(
    kind, confident, dtype, tmp_path
):
    """Also with logits of |z| 20 to 30, where the loss would be inf or lose every gradient in float16."""
    ann = _write_ann(tmp_path / "ann.json")
    amp_loss, reference = _build(kind, ann), _build(kind, ann)
    features, labels, weight = _autocast_logits(amp_loss)
    with torch.autocast("cpu", dtype=dtype):
        logits = features @ weight.t()
        if confident:
            logits = _confident(logits)
        assert logits.dtype == dtype  # what the classifier hands the loss under autocast
        value = amp_loss(logits, labels)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    # Exactly the float32 computation on the same (half-rounded) logits: nothing else is rounded.
    expected = reference(logits.detach().float(), labels)
    assert value.item() == expected.item()
    value.backward()
    assert weight.grad is not None and torch.isfinite(weight.grad).all() and weight.grad.abs().sum() > 0
    if kind == "EQLv2":
        _assert_statistics_equal(amp_loss, reference)


def test_eqlv2_weights_in_bfloat16_would_be_rounded():
    """Why the cast matters: the positive weight 1 + alpha (1 - q) at q = 0.3 is 3.8 in float32 and
    3.796875 in bfloat16; a loss computed at the logits' precision would train with the rounded one."""
    weight = 1 + 4.0 * (1 - torch.tensor(0.3))
    assert weight.item() == pytest.approx(3.8, abs=1e-6)
    assert weight.to(torch.bfloat16).item() == 3.796875


def test_confident_logits_in_float16_would_saturate():
    """Why the cast matters for float16: at |z| = 25 a right answer's BCE ``softplus(-25)`` and gradient
    ``sigmoid(-25)`` are 1.4e-11 and ``exp(25)`` is 7.2e10, below and above what float16 holds (6e-8 to
    65504); float32 keeps all three."""
    z = torch.tensor(25.0)
    half = z.half()
    assert F.softplus(-half) == 0 and torch.sigmoid(-half) == 0 and torch.isinf(torch.exp(half))
    assert F.softplus(-z).item() == pytest.approx(1.3888e-11, rel=1e-3)
    assert torch.sigmoid(-z).item() == pytest.approx(1.3888e-11, rel=1e-3)
    assert torch.exp(z).item() == pytest.approx(7.2005e10, rel=1e-3)


def _roi_features(head, num_rois: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """RoI features of the head's input shape and labels in [0, C] (C: background)."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(num_rois, head.in_channels, *head.roi_feat_size, generator=gen)
    return features, torch.randint(0, head.num_classes + 1, (num_rois,), generator=gen)


@HALF
def test_under_autocast_the_toy_seesaw_head_is_float32_and_within_half_rounding_of_float32(dtype):
    """mmdet's SeesawLoss with the toy config's cosine classifier (|z| <= 20).  Its compensation factor
    is built from ``softmax``, ``pow`` and ``log`` of the logits in their own dtype: CUDA's autocast runs
    those in float32, the CPU's leaves them in the half dtype, so here the loss is the float32 one to
    within the half dtype's rounding rather than exactly."""
    init_default_scope("mmdet")
    cfg = Config.fromfile(str(resolve_config(SEESAW_TOY)))
    torch.manual_seed(0)
    head = MODELS.build(cfg.model.roi_head.bbox_head)
    head.init_weights()
    features, labels = _roi_features(head)
    with torch.autocast("cpu", dtype=dtype):
        cls_score, _ = head(features)
        assert cls_score.dtype == dtype and cls_score.size(1) == head.num_classes + 2
        losses = head.loss_cls(cls_score, labels, torch.ones(len(labels)), avg_factor=len(labels))
    reference = MODELS.build(cfg.model.roi_head.bbox_head.loss_cls)
    expected = reference(cls_score.detach().float(), labels, torch.ones(len(labels)), avg_factor=len(labels))
    for name, value in losses.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
        assert value.item() == pytest.approx(expected[name].item(), rel=torch.finfo(dtype).eps), name
    sum(losses.values()).backward()
    grad = head.fc_cls.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


@HALF
def test_the_toy_eqlv2_box_head_under_cpu_autocast_has_float32_losses_and_statistics(dtype):
    """The real head of the toy EQLv2 config (shared FCs, fc_cls with C + 1 channels, mmdet's loss plumbing
    and the custom accuracy) on RoI features under autocast, as AmpOptimWrapper runs it.  (The whole
    detector cannot run under CPU autocast: mmcv's CPU nms has no half kernel; CUDA's has float16.)"""
    init_default_scope("mmdet")
    cfg = Config.fromfile(str(resolve_config(EQLV2_TOY)))
    torch.manual_seed(0)
    head = MODELS.build(cfg.model.roi_head.bbox_head)
    head.init_weights()
    num_classes = head.num_classes
    features, labels = _roi_features(head)
    num_rois = len(labels)
    gen = torch.Generator().manual_seed(1)
    rois = torch.cat([torch.zeros(num_rois, 1), torch.rand(num_rois, 4, generator=gen) * 64], dim=1)
    targets = torch.randn(num_rois, 4, generator=gen)
    weights = (labels < num_classes).float()[:, None].expand(-1, 4)
    with torch.autocast("cpu", dtype=dtype):
        cls_score, bbox_pred = head(features)
        assert cls_score.dtype == dtype and cls_score.size(1) == num_classes + 1
        losses = head.loss(cls_score, bbox_pred, rois, labels, torch.ones(num_rois), targets, weights)
    loss_cls = head.loss_cls
    assert losses["loss_cls"].dtype == torch.float32
    assert loss_cls.pos_grad.shape == (num_classes,) and loss_cls.neg_grad.sum() > 0
    # The statistics are those of the float32 computation on the same half logits.
    reference = MODELS.build(cfg.model.roi_head.bbox_head.loss_cls)
    reference(cls_score.detach().float(), labels)
    _assert_statistics_equal(loss_cls, reference)
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    grad = head.fc_cls.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def _classifier_gradient_sums(
    logits: torch.Tensor, labels: torch.Tensor, ann: str
) -> tuple[torch.Tensor, ...]:
    """The per-class sums ClassifierGradientHook collects from one EQLv2 call on these logits."""
    loss = _build("EQLv2", ann)
    gradients = ClassifierGradients(C)
    gradients.attach(loss)
    loss(logits, labels)
    return gradients.pos_grad, gradients.neg_grad


@HALF
def test_the_classifier_gradient_sums_under_autocast_are_those_of_the_float32_logits(dtype, tmp_path):
    """The hook's per-class sums (the gradient-ratio figure) of EQLv2 under autocast, with confident
    logits (|z| 20 to 30: p / N of a right negative is about 1e-13), are the sums of the float32
    computation on the same half-rounded logits: the hook takes its gradient with respect to a float32
    copy of them (in float16 a per-RoI gradient below 6e-8 would be 0, the rare classes' sums low)."""
    ann = _write_ann(tmp_path / "ann.json")
    features, labels, weight = _autocast_logits(_build("EQLv2", ann))
    with torch.autocast("cpu", dtype=dtype):
        logits = _confident(features @ weight.t())
        amp_sums = _classifier_gradient_sums(logits, labels, ann)
    sums = _classifier_gradient_sums(logits.detach().float().requires_grad_(), labels, ann)
    for amp_sum, expected in zip(amp_sums, sums, strict=True):
        assert torch.isfinite(amp_sum).all() and torch.equal(amp_sum, expected)


@pytest.mark.parametrize(
    "name", ["lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss_ms-1x_lvis-v1.py", "toy/mask-rcnn_r18_fpn_ce_toy.py"]
)
def test_amp_swaps_the_wrapper_and_keeps_the_optimizer(name):
    cfg = Config.fromfile(str(resolve_config(name)))
    before = cfg.optim_wrapper.to_dict()
    use_amp_optim_wrapper(cfg)
    after = cfg.optim_wrapper.to_dict()
    assert after.pop("type") == "AmpOptimWrapper" and after.pop("loss_scale") == "dynamic"
    before.pop("type", None)
    assert after == before  # optimizer, clipping, parameter-wise settings unchanged


def test_amp_leaves_an_amp_config_alone_and_refuses_another_wrapper():
    cfg = Config(dict(optim_wrapper=dict(type="AmpOptimWrapper", loss_scale=512.0, optimizer={})))
    use_amp_optim_wrapper(cfg)
    assert cfg.optim_wrapper.loss_scale == 512.0
    other = Config(dict(optim_wrapper=dict(type="ApexOptimWrapper", optimizer={})))
    with pytest.raises(ValueError, match="--amp replaces optim_wrapper.type OptimWrapper, but the config "
                                         "has 'ApexOptimWrapper'"):  # fmt: skip
        use_amp_optim_wrapper(other)


def test_amp_without_a_gpu_is_one_line_and_writes_nothing(small_toy, tmp_path):
    """Run with no GPU visible (CUDA_VISIBLE_DEVICES empty), so the refusal is checked on any machine."""
    command = eqlv2_command(
        1, "train", EQLV2_TOY, "--data-root", str(small_toy), "--work-dir", str(tmp_path / "work"),
        "--out", str(tmp_path / "model.pth"), "--amp",
    )  # fmt: skip
    env = eqlv2_env(CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "eqlv2 train: error: --amp (train.amp: true) needs a CUDA GPU: mmengine's AmpOptimWrapper refuses "
        "to run without one; train without --amp on this machine"
    )
    assert not (tmp_path / "work").exists() and not (tmp_path / "model.pth").exists()


def test_train_amp_in_the_workflow_config_adds_amp_to_every_training_job(tmp_path):
    snakemake = str(Path(sys.executable).parent / "snakemake")
    plans = {}
    for amp in ("false", "true"):
        overlay = tmp_path / f"amp-{amp}.yaml"
        overlay.write_text(f"train: {{max_iters: null, cfg_options: [], amp: {amp}}}\n")
        command = [snakemake, "--profile", "slurm", "--configfile", "config/lvis_v1.yaml", str(overlay),
                   "-n", "-p", "--forceall", "all"]  # fmt: skip
        result = subprocess.run(command, cwd=REPO, env=env(), capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        plans[amp] = re.findall(r"\nrule train:\n(?:    .*\n)*?Shell command: ([^\n]*)", result.stdout)
    assert len(plans["true"]) == len(plans["false"]) == 12  # the paper's 8 rows and 4 beyond it
    assert all(" --amp" in c for c in plans["true"]) and not any(" --amp" in c for c in plans["false"])
