"""Every method's accumulated per-class positive and negative classifier gradients (EQLv2's Fig. 1 for any
method): what they are for a softmax cross-entropy by hand, that they are EQLv2's own statistics for
EQLv2, that collecting them leaves training untouched, and that a distributed run sums them over its
processes.  The end-to-end files are checked by tests/test_workflow.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmdet.models.losses import CrossEntropyLoss

from eqlv2.engine.classifier_gradients import ClassifierGradients, split_by_label
from eqlv2.models import EQLv2, GroupSoftmax

C = 3
WORLD_SIZE = 2


def _logits(n: int, channels: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, channels, generator=gen) * 2).requires_grad_()
    labels = torch.randint(0, C + 1, (n,), generator=gen)
    return z, labels


def test_softmax_cross_entropy_by_hand():
    # Three RoIs of the classes 0 and 1 and the background (label 2 = C for C = 2).
    z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [1.0, -2.0, 3.0]], requires_grad=True)
    labels = torch.tensor([0, 1, 2])
    p = torch.softmax(z.detach().double(), dim=1).tolist()
    loss = CrossEntropyLoss(loss_weight=2.0)  # loss_weight and the mean over RoIs are divided out
    collected = ClassifierGradients(num_classes=2)
    collected.attach(loss)
    loss(z, labels, avg_factor=3.0)
    # positive: 1 - p of the RoI's own class; negative: p of every other RoI, background RoIs included
    assert collected.pos_grad.tolist() == pytest.approx([1 - p[0][0], 1 - p[1][1]])
    assert collected.neg_grad.tolist() == pytest.approx([p[1][0] + p[2][0], p[0][1] + p[2][1]])
    loss(z, labels, avg_factor=3.0)  # accumulated, never reset
    assert collected.pos_grad.tolist() == pytest.approx([2 * (1 - p[0][0]), 2 * (1 - p[1][1])])


def test_eqlv2_sums_are_its_own_statistics():
    eqlv2 = EQLv2(num_classes=C, loss_weight=1.5)
    collected = ClassifierGradients(num_classes=C)
    collected.attach(eqlv2)
    for iteration in range(4):  # the weights change with the statistics from the second call on
        z, labels = _logits(16 + iteration, C + 1, iteration)
        eqlv2(z, labels).backward()
    assert eqlv2.pos_grad.sum() > 0 and eqlv2.neg_grad.sum() > 0
    torch.testing.assert_close(collected.pos_grad, eqlv2.pos_grad.double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(collected.neg_grad, eqlv2.neg_grad.double(), rtol=1e-5, atol=1e-6)


def test_collecting_leaves_the_training_gradients_and_inference_untouched():
    z, labels = _logits(12, C + 1, 7)
    plain = CrossEntropyLoss()
    (expected,) = torch.autograd.grad(plain(z, labels), z)
    watched = CrossEntropyLoss()
    collected = ClassifierGradients(num_classes=C)
    collected.attach(watched)
    (grad,) = torch.autograd.grad(watched(z, labels), z)
    assert torch.equal(grad, expected)
    before = collected.pos_grad.clone(), collected.neg_grad.clone()
    with torch.no_grad():  # inference: no graph, nothing collected
        watched(z, labels)
    watched(z.detach(), labels)
    assert torch.equal(collected.pos_grad, before[0]) and torch.equal(collected.neg_grad, before[1])
    collected.detach()
    watched(z, labels)
    assert torch.equal(collected.pos_grad, before[0])


def test_grouped_layouts_read_each_class_from_its_own_channel(tmp_path):
    # BAGS lays its logits out group after group: class j's logit is channel label_channel[j].
    ann = tmp_path / "train.json"
    counts = [5, 50, 500]  # one class in each of the groups <10, 10-99, 100-999
    ann.write_text(str({"categories": [{"id": i + 1, "instance_count": c} for i, c in enumerate(counts)]})
                   .replace("'", '"'))  # fmt: skip
    bags = GroupSoftmax(num_classes=C, ann_file=str(ann))
    z, labels = _logits(20, bags.get_cls_channels(C), 3)
    collected = ClassifierGradients(C, bags.label_channel)
    collected.attach(bags)
    torch.manual_seed(0)
    total = bags(z, labels)
    (grad,) = torch.autograd.grad(total, z, retain_graph=True)
    pos, neg = split_by_label(grad * z.size(0), labels, bags.label_channel[:C])
    assert torch.equal(collected.pos_grad, pos) and torch.equal(collected.neg_grad, neg)
    assert bags.label_channel[:C].tolist() != list(range(C))  # the layout is not the identity


def test_split_by_label_puts_each_rois_gradient_on_its_side():
    grad = torch.tensor([[-0.5, 0.25, 0.1], [0.25, -0.75, 0.3], [0.125, 0.5, -0.9]])  # exact in binary
    labels = torch.tensor([0, 1, 2])  # the last RoI is background (C = 2)
    pos, neg = split_by_label(grad, labels, torch.arange(2))
    assert pos.tolist() == [0.5, 0.75]
    assert neg.tolist() == [0.25 + 0.125, 0.25 + 0.5]


# --- a distributed run -------------------------------------------------------------------------------


def rank_batch(iteration: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A different batch for each (iteration, rank), of a different size on each rank."""
    return _logits(5 + 3 * rank + iteration, C + 1, 1000 * iteration + rank)


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        loss = CrossEntropyLoss()
        collected = ClassifierGradients(num_classes=C)
        collected.attach(loss)
        for iteration in range(3):
            loss(*rank_batch(iteration, rank)).backward()
        torch.save(collected.state(), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_distributed_run_sums_the_gradients_of_all_processes_on_every_rank(tmp_path):
    saved = os.environ.get("GLOO_SOCKET_IFNAME")
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only; the spawned workers inherit it
    try:
        ctx = mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD_SIZE, join=False)
    finally:
        if saved is None:
            del os.environ["GLOO_SOCKET_IFNAME"]
        else:
            os.environ["GLOO_SOCKET_IFNAME"] = saved
    deadline = time.monotonic() + 180
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.terminate()
            pytest.fail("the 2-process gloo run did not finish in 180 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    # One process over every rank's RoIs (each rank's loss is its own mean: the per-RoI sums add up).
    loss = CrossEntropyLoss()
    single = ClassifierGradients(num_classes=C)
    single.attach(loss)
    for iteration in range(3):
        for rank in range(WORLD_SIZE):
            loss(*rank_batch(iteration, rank))
    for state in ranks:
        torch.testing.assert_close(state["pos_grad"], single.pos_grad)
        torch.testing.assert_close(state["neg_grad"], single.neg_grad)
