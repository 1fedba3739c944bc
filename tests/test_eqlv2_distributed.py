"""EQLv2's statistics are global: two gloo processes on the CPU, and how mmdet 3.3's ``EQLV2Loss`` differs.

Why the statistics of a 2-process run equal those of one process over the concatenated batches, although
the losses differ (each rank divides by its own N, one process by the total): the weights of an iteration
depend only on ``pos_neg``, the increments of a batch are sums over its RoIs, and ``all_reduce`` adds the
ranks' sums, so both runs accumulate the same numbers (up to float summation order) and therefore compute
the same weights at the next iteration.  By induction they agree after every iteration.

How mmdet 3.3's built-in ``EQLV2Loss`` (``mmdet/models/losses/eqlv2_loss.py``) differs from the original
and from :class:`eqlv2.models.EQLv2` (checked below where it can be checked):

* The ``all_reduce`` sits behind ``use_distributed=False`` (the reference digest says it was removed; it is
  in fact switched off by default).  With the default each GPU keeps its own statistics: the ranks drift
  apart and weigh the same class differently.  With ``use_distributed=True`` it matches the original.
* It sets none of the mmdet 3 head hooks (it defines the 2.x ``get_channel_num``/``get_activation``,
  which nothing calls).  So ``BBoxHead`` treats it as a softmax loss: ``fc_cls`` gets ``num_classes + 1``
  outputs, which is the right size only by coincidence (the softmax layout also has C + 1 outputs);
  at test time the head applies a **softmax over the C + 1 logits** instead of
  ``sigmoid(z_c) * (1 - sigmoid(z_bg))``; and the logged ``acc`` is the argmax over all C + 1 raw logits.
* ``num_classes`` defaults to 1203 and is not checked against the head: in a head with another class
  count the first forward fails on a shape mismatch.
* Like the original it takes no notice of ``weight`` (label weights), ``avg_factor``, ``reduction`` or
  ``reduction_override``; its statistics are buffers too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmdet.models.losses import EQLV2Loss
from mmdet.registry import MODELS

from eqlv2.models import EQLv2

C = 3
WORLD_SIZE = 2
ITERATIONS = 3
STATS = ("pos_grad", "neg_grad", "pos_neg")


def rank_batch(iteration: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A different batch for each (iteration, rank), of a different size on each rank."""
    gen = torch.Generator().manual_seed(1000 * iteration + rank)
    n = 5 + 3 * rank + iteration
    z = torch.randn(n, C + 1, generator=gen) * 2
    labels = torch.randint(0, C + 1, (n,), generator=gen)
    return z, labels


def _stats(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: getattr(module, k).clone() for k in STATS}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    try:
        ours = EQLv2(num_classes=C)
        upstream = EQLV2Loss(num_classes=C)  # mmdet 3.3 default: use_distributed=False
        upstream_dist = EQLV2Loss(num_classes=C, use_distributed=True)
        losses = []
        for it in range(ITERATIONS):
            z, labels = rank_batch(it, rank)
            losses.append(ours(z, labels).item())
            upstream(z, labels)
            upstream_dist(z, labels)
        torch.save(
            {
                "ours": _stats(ours),
                "upstream": _stats(upstream),
                "upstream_dist": _stats(upstream_dist),
                "losses": losses,
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory) -> list[dict]:
    tmp = tmp_path_factory.mktemp("dist")
    saved = os.environ.get("GLOO_SOCKET_IFNAME")
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only; the spawned workers inherit it
    try:
        ctx = mp.spawn(_worker, args=(str(tmp / "store"), str(tmp)), nprocs=WORLD_SIZE, join=False)
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
    return [torch.load(tmp / f"rank{r}.pt") for r in range(WORLD_SIZE)]


def single_process(module: torch.nn.Module, ranks: list[int]) -> dict[str, torch.Tensor]:
    """Run ``module`` without a process group on the concatenation of the given ranks' batches."""
    assert not (dist.is_available() and dist.is_initialized())
    for it in range(ITERATIONS):
        batches = [rank_batch(it, r) for r in ranks]
        module(torch.cat([z for z, _ in batches]), torch.cat([y for _, y in batches]))
    return _stats(module)


def test_eqlv2_statistics_are_identical_on_every_rank(two_rank_run):
    rank0, rank1 = two_rank_run
    for k in STATS:
        assert torch.equal(rank0["ours"][k], rank1["ours"][k]), k


def test_eqlv2_statistics_equal_one_process_on_the_whole_batch(two_rank_run):
    expected = single_process(EQLv2(num_classes=C), ranks=[0, 1])
    for k in STATS:
        torch.testing.assert_close(two_rank_run[0]["ours"][k], expected[k])
    # The statistics are non-trivial: every class has seen gradients of both signs.
    assert bool((expected["pos_grad"] > 0).all() and (expected["neg_grad"] > 0).all())
    # The losses are not the same numbers: each rank normalises by its own number of RoIs.
    assert two_rank_run[0]["losses"] != two_rank_run[1]["losses"]


def test_mmdet_eqlv2_loss_keeps_per_gpu_statistics_by_default(two_rank_run):
    rank0, rank1 = two_rank_run
    assert not torch.allclose(rank0["upstream"]["pos_neg"], rank1["upstream"]["pos_neg"])
    # each rank only ever saw its own batches ...
    for r in range(WORLD_SIZE):
        alone = single_process(EQLV2Loss(num_classes=C), ranks=[r])
        for k in STATS:
            torch.testing.assert_close(two_rank_run[r]["upstream"][k], alone[k])
    # ... unless use_distributed=True, which matches the original (and ours).
    for k in STATS:
        torch.testing.assert_close(rank0["upstream_dist"][k], rank0["ours"][k])
        torch.testing.assert_close(rank1["upstream_dist"][k], rank0["ours"][k])


def _head(loss_cls: dict):
    return MODELS.build(
        dict(
            type="Shared2FCBBoxHead",
            in_channels=4,
            fc_out_channels=8,
            roi_feat_size=7,
            num_classes=C,
            loss_cls=loss_cls,
        )
    )


def test_mmdet_eqlv2_loss_in_a_head_is_treated_as_softmax():
    upstream = _head(dict(type="EQLV2Loss", num_classes=C))
    assert not hasattr(upstream.loss_cls, "custom_cls_channels")
    assert upstream.fc_cls.out_features == C + 1  # BBoxHead's softmax default, not get_channel_num()

    rois = torch.tensor([[0, 0, 0, 10, 10], [0, 5, 5, 30, 30]], dtype=torch.float)
    metas = [dict(img_shape=(32, 32), scale_factor=(1.0, 1.0))]
    cls_score = torch.tensor([[2.0, -1.0, 0.5, -3.0], [0.0, 1.0, -2.0, 1.5]])
    bbox_pred = torch.zeros(2, 4 * C)
    raw = upstream.predict_by_feat((rois,), (cls_score,), (bbox_pred,), metas, rcnn_test_cfg=None)[0]
    torch.testing.assert_close(raw.scores, F.softmax(cls_score, dim=-1))

    ours = _head(dict(type="EQLv2", num_classes=C))
    raw = ours.predict_by_feat((rois,), (cls_score,), (bbox_pred,), metas, rcnn_test_cfg=None)[0]
    p = torch.sigmoid(cls_score)
    torch.testing.assert_close(raw.scores, torch.cat([p[:, :C] * (1 - p[:, C:]), p[:, C:]], dim=1))


def test_mmdet_eqlv2_loss_default_num_classes_is_not_checked():
    head = _head(dict(type="EQLV2Loss"))  # num_classes defaults to 1203, the head has 3
    assert head.fc_cls.out_features == C + 1
    with pytest.raises(RuntimeError):
        head.loss_cls(torch.zeros(2, C + 1), torch.tensor([0, C]))
    with pytest.raises(AssertionError):
        _head(dict(type="EQLv2", num_classes=1203))  # ours refuses to be built into the wrong head
