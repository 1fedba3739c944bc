"""Specification of the Federated Loss (``eqlv2.models.FederatedLoss``) from hand-computed cases.

Which classes enter the loss, the draw probabilities, the value and gradient against a plain
``F.binary_cross_entropy_with_logits`` over the chosen columns, the seeding (per rank under a process
group), the mmdet head hooks, and the toy and LVIS v1 configs.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.config import ConfigDict

import eqlv2.models  # noqa: F401  (registers the losses)
from eqlv2.checkpoint import load_checkpoint
from eqlv2.config import load_run_config
from eqlv2.models import SIGMOID_PRIOR_INIT_CFG
from eqlv2.models.losses import FederatedLoss
from eqlv2.models.losses.federated import federated_sampling_weights

from .real_config_helpers import LVIS_NUM_CLASSES, make_lvis_v1

C = 6
BG = C
# Image counts of labels 0..5 (category ids 1..6): square roots 8, 4, 3, 2, 1, 0, sum 18.
IMAGE_COUNTS = [64, 16, 9, 4, 1, 0]
HAND_WEIGHTS = [8 / 18, 4 / 18, 3 / 18, 2 / 18, 1 / 18, 0.0]


def write_ann(path: Path, image_counts: list[int]) -> str:
    """An LVIS-format training file: category id k + 1 has ``image_counts[k]``, listed in reverse id order
    (labels follow the ids), and 100 annotated images."""
    categories = [{"id": k + 1, "name": f"c{k + 1}", "image_count": n} for k, n in enumerate(image_counts)]
    annotations = [{"id": i + 1, "image_id": i + 1, "category_id": 1} for i in range(100)]
    path.write_text(json.dumps({"categories": categories[::-1], "annotations": annotations, "images": []}))
    return str(path)


@pytest.fixture
def ann6(tmp_path) -> str:
    return write_ann(tmp_path / "train6.json", IMAGE_COUNTS)


@pytest.fixture
def ann120(tmp_path) -> str:
    """120 classes with image counts 1..120 (label j has j + 1 images)."""
    return write_ann(tmp_path / "train120.json", list(range(1, 121)))


def fed(ann: str, num_classes: int = C, **kwargs) -> FederatedLoss:
    return MODELS.build(dict(type="FederatedLoss", num_classes=num_classes, ann_file=ann, **kwargs))


def bce(z: float, y: float) -> float:
    """BCE with logits: softplus(z) - y z."""
    return math.log1p(math.exp(z)) - y * z


# ---------------------------------------------------------------------------------------------------------
# The draw probabilities
# ---------------------------------------------------------------------------------------------------------


def test_sampling_weights_are_image_count_to_the_power_half_normalised(ann6):
    loss = fed(ann6)
    assert loss.sample_weights.dtype == torch.float64
    assert loss.sample_weights.tolist() == pytest.approx(HAND_WEIGHTS, rel=1e-12, abs=0)
    linear = fed(ann6, freq_weight_power=1.0).sample_weights
    assert linear.tolist() == pytest.approx([n / 94 for n in IMAGE_COUNTS], rel=1e-12, abs=0)
    # A class without images is never drawn, whatever the power (0 ** 0 would be 1).
    assert federated_sampling_weights(torch.tensor([4.0, 0.0]), 0.0).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="nothing to sample"):
        federated_sampling_weights(torch.zeros(3), 0.5)


def test_sampling_weights_stay_on_the_cpu_in_float64_when_the_model_is_cast(ann6):
    loss = fed(ann6).half()
    assert loss.sample_weights.dtype == torch.float64 and loss.sample_weights.device.type == "cpu"
    assert dict(loss.state_dict()) == {}  # nothing to checkpoint


def test_a_single_draw_follows_the_weights_tensor(ann6):
    """Background-only RoIs and a subset of 1: one class drawn with probability ``sample_weights``."""
    loss = fed(ann6, fed_loss_num_classes=1, seed=3)
    draws = 9000
    counts = torch.zeros(C)
    for _ in range(draws):
        (j,) = loss.select_classes(torch.tensor([BG, BG])).tolist()
        counts[j] += 1
    for j, w in enumerate(loss.sample_weights.tolist()):
        sd = math.sqrt(draws * w * (1 - w))
        assert abs(counts[j].item() - draws * w) <= 4 * sd + 1e-9, (j, counts.tolist())
    assert counts[5] == 0  # no image, never drawn


def test_drawn_classes_are_renormalised_over_the_classes_not_in_the_ground_truth(ann6):
    """Ground truth {0} and a subset of 2: the drawn class is j with probability w_j / (1 - w_0)."""
    loss = fed(ann6, fed_loss_num_classes=2, seed=4)
    draws = 6000
    counts = torch.zeros(C)
    for _ in range(draws):
        chosen = loss.select_classes(torch.tensor([0, BG, 0])).tolist()
        assert 0 in chosen and len(chosen) == 2
        counts[[j for j in chosen if j != 0][0]] += 1
    rest = 1 - HAND_WEIGHTS[0]
    for j in range(1, C):
        p = HAND_WEIGHTS[j] / rest  # 0.4, 0.3, 0.2, 0.1, 0
        sd = math.sqrt(draws * p * (1 - p))
        assert abs(counts[j].item() - draws * p) <= 4 * sd + 1e-9, (j, counts.tolist())


def test_inclusion_rate_orders_with_the_weight(ann6):
    """Two of the five classes with images drawn without replacement: the heavier, the more often in."""
    loss = fed(ann6, fed_loss_num_classes=2, seed=5)
    counts = torch.zeros(C)
    for _ in range(4000):
        chosen = loss.select_classes(torch.tensor([BG] * 4))
        assert chosen.numel() == 2 and chosen.unique().numel() == 2
        counts[chosen] += 1
    assert counts[0] > counts[1] > counts[2] > counts[3] > counts[4] > 0 == counts[5]
    # Without replacement: class 0 (w = 0.44) is in more often than its weight alone, but at most always.
    assert 4000 * HAND_WEIGHTS[0] < counts[0] < 4000


# ---------------------------------------------------------------------------------------------------------
# Which classes enter the loss
# ---------------------------------------------------------------------------------------------------------


def test_ground_truth_classes_are_always_in_and_the_total_is_the_subset_size(ann6):
    loss = fed(ann6, fed_loss_num_classes=4, seed=0)
    labels = torch.tensor([3, 3, 5, BG, BG])  # class 5 has no training image, but it is ground truth
    seen = set()
    for _ in range(200):
        chosen = loss.select_classes(labels)
        assert chosen.dtype == torch.long and chosen.tolist() == sorted(set(chosen.tolist()))
        assert len(chosen) == 4 and {3, 5} <= set(chosen.tolist())
        seen |= set(chosen.tolist())
    assert seen == {0, 1, 2, 3, 4, 5}  # every class with images gets drawn some time


def test_default_subset_is_50_classes(ann120):
    loss = fed(ann120, num_classes=120)
    assert loss.fed_loss_num_classes == 50 and loss.freq_weight_power == 0.5
    gt = [7, 7, 19, 33, 60, 101, 119]
    chosen = loss.select_classes(torch.tensor(gt + [120] * 10)).tolist()
    assert len(chosen) == 50 == len(set(chosen)) and set(gt) <= set(chosen)


def test_more_ground_truth_classes_than_the_subset_keeps_them_all_and_draws_none(ann120):
    loss = fed(ann120, num_classes=120)
    gt = list(range(0, 120, 2))  # 60 classes
    state = loss.generator.get_state()
    assert loss.select_classes(torch.tensor(gt + [120])).tolist() == gt
    assert torch.equal(loss.generator.get_state(), state)  # nothing drawn
    assert loss.select_classes(torch.tensor(gt[:50])).tolist() == gt[:50]  # exactly 50: none drawn


def test_fewer_classes_to_draw_from_than_missing_takes_them_all(ann6):
    loss = fed(ann6, fed_loss_num_classes=6)
    assert loss.select_classes(torch.tensor([0, BG])).tolist() == [0, 1, 2, 3, 4]  # 5 has no image
    assert loss.select_classes(torch.tensor([5])).tolist() == [0, 1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------------------------------------
# Value and gradient
# ---------------------------------------------------------------------------------------------------------

HAND_Z = [
    [0.5, -1.0, 2.0, 0.0, -0.5, 1.5],
    [-2.0, 0.3, -0.7, 1.0, 0.2, -1.2],
    [1.0, 2.5, -0.3, -1.5, 0.8, 0.1],
]
HAND_LABELS = [1, BG, 4]


def test_loss_value_by_hand_on_the_ground_truth_columns(ann6):
    """A subset of 2 with ground truth {1, 4}: nothing is drawn, S = {1, 4}."""
    loss = fed(ann6, fed_loss_num_classes=2, loss_weight=0.5)
    value = loss(torch.tensor(HAND_Z), torch.tensor(HAND_LABELS))
    hand = sum(
        bce(HAND_Z[i][j], float(HAND_LABELS[i] == j)) for i in range(3) for j in (1, 4)
    )  # the background row 1 has target 0 on both columns
    assert value.item() == pytest.approx(0.5 * hand / 3, rel=1e-6)


def test_loss_value_with_a_drawn_class_against_torch_bce(ann6):
    loss, twin = fed(ann6, fed_loss_num_classes=3, seed=11), fed(ann6, fed_loss_num_classes=3, seed=11)
    z, labels = torch.tensor(HAND_Z), torch.tensor(HAND_LABELS)
    chosen = twin.select_classes(labels)
    assert len(chosen) == 3 and {1, 4} <= set(chosen.tolist())
    target = F.one_hot(labels, C + 1)[:, :C].float()
    want = F.binary_cross_entropy_with_logits(z[:, chosen], target[:, chosen], reduction="sum") / 3
    assert loss(z, labels).item() == pytest.approx(want.item(), rel=1e-6)


def test_reductions_and_loss_weight(ann6):
    z, labels = torch.tensor(HAND_Z), torch.tensor(HAND_LABELS)
    mean = fed(ann6, seed=2, fed_loss_num_classes=3)(z, labels)
    total = fed(ann6, seed=2, fed_loss_num_classes=3)(z, labels, reduction_override="sum")
    none = fed(ann6, seed=2, fed_loss_num_classes=3)(z, labels, reduction_override="none")
    chosen = fed(ann6, seed=2, fed_loss_num_classes=3).select_classes(labels)
    assert none.shape == (3, C)
    outside = [j for j in range(C) if j not in chosen.tolist()]
    assert none[:, outside].abs().sum() == 0 and bool((none[:, chosen] > 0).all())
    assert total.item() == pytest.approx(none.sum().item(), rel=1e-6)
    assert mean.item() == pytest.approx(total.item() / 3, rel=1e-6)
    weighted = fed(ann6, seed=2, fed_loss_num_classes=3, loss_weight=2.5)(z, labels)
    assert weighted.item() == pytest.approx(2.5 * mean.item(), rel=1e-6)
    assert fed(ann6, loss_weight=0.0)(z, labels).item() == 0.0


def test_contract_like_the_other_losses(ann6):
    loss = fed(ann6)
    z, labels = torch.tensor(HAND_Z), torch.tensor(HAND_LABELS)
    with pytest.raises(AssertionError):
        loss(z, labels, reduction_override="avg")
    with pytest.raises(ValueError, match="avg_factor"):
        loss(z, labels, avg_factor=3, reduction_override="sum")
    with pytest.raises(ValueError, match=r"\[0, 6\]"):
        loss(z, torch.tensor([0, 7, 1]))
    with pytest.raises(AssertionError):
        loss(torch.zeros(3, C + 1), labels)  # the C + 1 layout of EQLv2
    # label_weights and avg_factor are not used: the normaliser is N
    assert loss(z, labels, torch.zeros(3), avg_factor=100).item() == pytest.approx(
        fed(ann6)(z, labels).item(), rel=1e-6
    )
    empty = torch.zeros(0, C, requires_grad=True)
    value = loss(empty, torch.zeros(0, dtype=torch.long))
    assert value.item() == 0.0
    value.backward()
    assert empty.grad.shape == (0, C)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradient_is_zero_outside_the_subset_and_autograd_of_the_reference_inside(ann120, reduction):
    gen = torch.Generator().manual_seed(0)
    n = 40
    z = (torch.randn(n, 120, generator=gen) * 3).requires_grad_()
    labels = torch.where(torch.rand(n, generator=gen) < 0.4, torch.randint(0, 120, (n,), generator=gen), 120)
    loss, twin = fed(ann120, num_classes=120, seed=9), fed(ann120, num_classes=120, seed=9)
    chosen = twin.select_classes(labels)
    assert len(chosen) == 50

    upstream = torch.rand(n, 120, generator=gen) + 0.5 if reduction == "none" else torch.tensor(1.7)
    loss(z, labels, reduction_override=reduction).backward(upstream)

    ref_z = z.detach().clone().requires_grad_()
    target = F.one_hot(labels, 121)[:, :120].float()
    ref = F.binary_cross_entropy_with_logits(ref_z[:, chosen], target[:, chosen], reduction="none")
    if reduction == "none":
        ref = (ref * upstream[:, chosen]).sum()
    else:
        ref = ref.sum() / (n if reduction == "mean" else 1) * upstream
    ref.backward()

    outside = torch.ones(120, dtype=torch.bool)
    outside[chosen] = False
    assert bool((z.grad[:, outside] == 0).all())  # exactly zero
    assert bool((z.grad[:, chosen] != 0).all())
    torch.testing.assert_close(z.grad[:, chosen], ref_z.grad[:, chosen], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_computed_in_float32(ann120, dtype):
    gen = torch.Generator().manual_seed(1)
    z = (torch.randn(30, 120, generator=gen) * 4).to(dtype).requires_grad_()
    labels = torch.randint(0, 121, (30,), generator=gen)
    value = fed(ann120, num_classes=120, seed=1)(z, labels)
    want = fed(ann120, num_classes=120, seed=1)(z.detach().float(), labels)
    assert value.dtype == torch.float32 and value.item() == want.item()
    value.backward()
    assert z.grad.dtype == dtype


# ---------------------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------------------

SEED_LABELS = torch.tensor([3, 3, 17, 64, 120, 120, 99])


def _subsets(loss: FederatedLoss, calls: int = 10) -> list[list[int]]:
    return [loss.select_classes(SEED_LABELS).tolist() for _ in range(calls)]


def test_a_seed_gives_the_same_subsets_and_another_seed_others(ann120):
    first = _subsets(fed(ann120, num_classes=120, seed=7))
    assert first == _subsets(fed(ann120, num_classes=120, seed=7))
    assert len({tuple(s) for s in first}) == 10  # each call draws anew
    other = _subsets(fed(ann120, num_classes=120, seed=8))
    assert all(a != b for a, b in zip(first, other, strict=True))
    # The global RNG plays no part.
    torch.manual_seed(123)
    again = _subsets(fed(ann120, num_classes=120, seed=7))
    assert again == first


def _rank_worker(rank: int, init_file: str, ann: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        loss = FederatedLoss(
            num_classes=120, ann_file=ann, seed=20
        )  # built before any draw, as mmengine does
        torch.save(_subsets(loss, 3), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_each_rank_draws_its_own_subsets_from_seed_plus_rank(ann120, tmp_path):
    saved = os.environ.get("GLOO_SOCKET_IFNAME")
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only; the spawned workers inherit it
    try:
        ctx = mp.spawn(
            _rank_worker, args=(str(tmp_path / "store"), ann120, str(tmp_path)), nprocs=2, join=False
        )
    finally:
        if saved is None:
            del os.environ["GLOO_SOCKET_IFNAME"]
        else:
            os.environ["GLOO_SOCKET_IFNAME"] = saved
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=2):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.terminate()
            pytest.fail("the 2-process gloo run did not finish in 120 s")
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert rank0 == _subsets(fed(ann120, num_classes=120, seed=20), 3)
    assert rank1 == _subsets(fed(ann120, num_classes=120, seed=21), 3)
    assert rank0 != rank1


# ---------------------------------------------------------------------------------------------------------
# In mmdet's head, and the configs
# ---------------------------------------------------------------------------------------------------------


def _sampling_result():
    """One image: 6 RoIs, 3 positives (gt 0 of class 0, gt 1 of class 2), 3 negatives."""
    from mmdet.models.task_modules.assigners import AssignResult
    from mmdet.models.task_modules.samplers import SamplingResult

    priors = torch.tensor(
        [[0, 0, 10, 10], [20, 20, 40, 40], [1, 1, 11, 11], [30, 0, 50, 10], [0, 40, 9, 60], [50, 50, 63, 63]],
        dtype=torch.float,
    )
    assign = AssignResult(
        num_gts=2,
        gt_inds=torch.tensor([1, 2, 1, 0, 0, 0]),
        max_overlaps=torch.tensor([0.9, 0.9, 0.7, 0.0, 0.0, 0.0]),
        labels=torch.tensor([0, 2, 0, -1, -1, -1]),
    )
    return SamplingResult(
        pos_inds=torch.tensor([0, 1, 2]),
        neg_inds=torch.tensor([3, 4, 5]),
        priors=priors,
        gt_bboxes=torch.tensor([[0, 0, 10, 11], [20, 21, 40, 40]], dtype=torch.float),
        assign_result=assign,
        gt_flags=torch.zeros(6, dtype=torch.uint8),
    )


def test_in_shared2fc_bbox_head(ann6):
    loss_cfg = dict(type="FederatedLoss", num_classes=C, ann_file=ann6, fed_loss_num_classes=3, seed=5)
    head = MODELS.build(
        dict(
            type="Shared2FCBBoxHead",
            in_channels=8,
            fc_out_channels=16,
            roi_feat_size=7,
            num_classes=C,
            loss_cls=loss_cfg,
            init_cfg=SIGMOID_PRIOR_INIT_CFG,
        )  # fmt: skip
    )
    head.init_weights()
    assert head.fc_cls.out_features == C  # get_cls_channels: no background logit
    assert head.fc_cls.bias.tolist() == pytest.approx([-math.log(0.999 / 0.001)] * C)

    torch.manual_seed(0)
    sampling = _sampling_result()
    priors = torch.cat([sampling.pos_priors, sampling.neg_priors])  # the order get_targets uses
    rois = torch.cat([torch.zeros(6, 1), priors], dim=1)
    cls_score, bbox_pred = head(torch.randn(6, 8, 7, 7))
    assert cls_score.shape == (6, C)
    out = head.loss_and_target(cls_score, bbox_pred, rois, [sampling], ConfigDict(pos_weight=-1))
    labels = out["bbox_targets"][0]
    assert labels.tolist() == [0, 2, 0, BG, BG, BG]
    losses = out["loss_bbox"]
    assert set(losses) == {"loss_cls", "loss_bbox", "acc_objectness", "acc_classes"}  # get_accuracy
    chosen = MODELS.build(loss_cfg).select_classes(labels)
    assert len(chosen) == 3 and {0, 2} <= set(chosen.tolist())
    target = F.one_hot(labels, C + 1)[:, :C].float()
    want = F.binary_cross_entropy_with_logits(cls_score[:, chosen], target[:, chosen], reduction="sum") / 6
    assert losses["loss_cls"].item() == pytest.approx(want.item(), rel=1e-6)
    losses["loss_cls"].backward()
    grad_rows = head.fc_cls.weight.grad.abs().sum(dim=1)
    assert [j for j in range(C) if grad_rows[j] > 0] == chosen.tolist()  # no gradient outside S

    metas = [dict(img_shape=(64, 64), scale_factor=(1.0, 1.0))]
    with torch.no_grad():
        cls_score, bbox_pred = head(torch.randn(6, 8, 7, 7))
        raw = head.predict_by_feat((rois,), (cls_score,), (bbox_pred,), metas, rcnn_test_cfg=None)[0]
    assert raw.scores.shape == (6, C + 1) and bool((raw.scores[:, -1] == 0).all())  # get_activation
    torch.testing.assert_close(raw.scores[:, :C], torch.sigmoid(cls_score))


TOY = "toy/mask-rcnn_r18_fpn_fed-loss_toy.py"
LVIS = "lvis_v1/mask-rcnn_r50_fpn_fed-loss_ms-1x_lvis-v1.py"


def test_the_toy_config_trains_two_iterations(small_toy, tmp_path):
    from eqlv2.engine.training import train

    cfg = load_run_config(TOY, small_toy)
    loss_cls = cfg.model.roi_head.bbox_head.loss_cls
    assert loss_cls.ann_file == str(small_toy / "annotations/lvis_v1_train.json")  # the run's training file
    assert (loss_cls.type, loss_cls.fed_loss_num_classes, loss_cls.freq_weight_power) == (
        "FederatedLoss",
        16,
        0.5,
    )
    assert cfg.model.roi_head.bbox_head.init_cfg == SIGMOID_PRIOR_INIT_CFG

    options = {"visualizer.name": "visualizer_fed_loss_toy", "default_hooks.logger.interval": 1}
    out = train(
        TOY, tmp_path / "train", tmp_path / "final.pth", data_root=small_toy, max_iters=2, cfg_options=options
    )
    checkpoint = load_checkpoint(out)
    assert checkpoint["meta"]["iter"] == 2
    state = checkpoint["state_dict"]
    assert state["roi_head.bbox_head.fc_cls.weight"].shape == (48, 256)  # sigmoid: no background
    assert not [k for k in state if "loss_cls" in k]
    (scalars,) = (tmp_path / "train").glob("*/vis_data/scalars.json")
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    assert rows and all(math.isfinite(r["loss_cls"]) and r["loss_cls"] > 0 for r in rows if "loss_cls" in r)


def test_the_lvis_v1_config_builds_with_50_of_1203_classes(tmp_path):
    ann = make_lvis_v1(tmp_path / "lvis_v1")
    root = tmp_path / "lvis_v1"
    cfg = load_run_config(LVIS, root)
    head_cfg = cfg.model.roi_head.bbox_head
    assert head_cfg.init_cfg == SIGMOID_PRIOR_INIT_CFG
    assert head_cfg.loss_cls.ann_file == str(ann)
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")
    model = MODELS.build(cfg.model)
    assert model.roi_head.bbox_head.fc_cls.out_features == LVIS_NUM_CLASSES  # no background logit
    loss = model.roi_head.bbox_head.loss_cls
    assert (loss.num_classes, loss.fed_loss_num_classes, loss.freq_weight_power) == (
        LVIS_NUM_CLASSES,
        50,
        0.5,
    )
    assert loss.get_cls_channels(LVIS_NUM_CLASSES) == LVIS_NUM_CLASSES
    categories = sorted(json.loads(ann.read_text())["categories"], key=lambda c: c["id"])
    counts = torch.tensor([c["image_count"] for c in categories], dtype=torch.float64)
    torch.testing.assert_close(loss.sample_weights, counts.sqrt() / counts.sqrt().sum())
