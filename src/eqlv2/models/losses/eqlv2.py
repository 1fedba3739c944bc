"""Equalization Loss v2 (EQLv2), as in the authors' code (tztztztztz/eqlv2, ``mmdet/models/losses/eqlv2.py``).

Tan et al., "Equalization Loss v2: A New Gradient Balance Approach for Long-tailed Object Detection",
CVPR 2021, https://arxiv.org/abs/2012.08548.

What the original does, and this module reproduces:

* The classifier has C + 1 sigmoid logits.  The last one is trained as a *background* detector: a background
  RoI (label C) has its one-hot target on that channel.
* Every class channel j has a positive weight ``pos_w_j`` and a negative weight ``neg_w_j``, computed from the
  ratio ``pos_neg_j = pos_grad_j / neg_grad_j`` of the class's *accumulated* positive and negative gradients:
  ``q_j = sigmoid(gamma * (pos_neg_j - mu))``, ``neg_w_j = q_j``, ``pos_w_j = 1 + alpha * (1 - q_j)``.
  The background channel is a plain BCE (both weights 1).
* The loss is ``loss_weight * sum_ij w_ij * BCE(z_ij, y_ij) / N`` with N the number of RoIs (not N * C).
* With the loss, the gradients the weighted BCE sends to each class logit are computed in closed form
  (``dBCE/dz = p - y``) and accumulated into the buffers ``pos_grad`` and ``neg_grad``, summed over all
  processes with ``all_reduce``.  The statistics never decay and are used from the next call on.

Where it departs from the original, and why:

* ``all_reduce`` runs only when a process group is initialised (the original crashed in single-process
  training, issue #10).  With a group it is called on every forward, so ranks stay in lock-step.
* The three mmdet 3 head hooks are set (as ``SeesawLoss`` does), so the head sizes ``fc_cls`` from
  :meth:`EQLv2.get_cls_channels` and applies :meth:`EQLv2.get_activation` at test time.  mmdet's own port
  (``EQLV2Loss``) sets none of them; see ``tests/test_eqlv2_distributed.py``.
* ``reduction_override='sum'`` and ``'none'`` are honoured (the original ignored the argument); the default
  ``'mean'`` is the original's sum over the RoIs divided by N.
* Under mixed precision the logits arrive in float16/bfloat16; the weights, the loss and the statistics are
  computed in float32 (the original ran in float32 only).
* The loss, its gradient and the statistics come from one sigmoid and one softplus of the logits, without
  the (N, C + 1) one-hot and weight matrices, and the backward is the closed form ``w * (p - y)`` (a
  custom autograd function, :class:`_EQLv2BCE`): forward and backward cost about as much as a plain
  sigmoid BCE, where the original's two passes (loss, then statistics) cost about three times as much.
  The values are the same up to float rounding.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmdet.models.losses import accuracy
from mmdet.registry import MODELS
from mmengine.logging import print_log
from torch import Tensor, nn

__all__ = ["EQLv2", "eqlv2_weights", "eqlv2_loss_and_increments"]


def eqlv2_weights(pos_neg: Tensor, gamma: float, mu: float, alpha: float) -> tuple[Tensor, Tensor]:
    """Per-channel (positive, negative) weights from the gradient ratios ``pos_neg`` of the C classes.

    The mapping function is ``f(x) = 1 / (1 + exp(-gamma * (x - mu)))``: a class whose positive gradients
    have fallen behind its negative ones (small ratio, a rare class) gets its negative gradients scaled down
    (``neg_w = f(x)``) and its positive ones scaled up (``pos_w = 1 + alpha * (1 - f(x))``).

    Args:
        pos_neg (Tensor): Accumulated positive/negative gradient ratio of each class, shape (C,).
        gamma (float): Steepness of the mapping function.
        mu (float): Centre of the mapping function.
        alpha (float): How much the positive gradients are boosted.

    Returns:
        tuple[Tensor, Tensor]: ``pos_w`` and ``neg_w``, each of shape (C + 1,); the last entry, the
        background channel, is 1 in both.
    """
    q = torch.sigmoid(gamma * (pos_neg - mu))  # = 1 / (1 + exp(-gamma (x - mu))), overflow-free
    neg_w = torch.cat([q, q.new_ones(1)])
    pos_w = 1 + alpha * (1 - neg_w)
    return pos_w, neg_w


class _EQLv2BCE(torch.autograd.Function):
    """The weighted BCE of EQLv2 and this call's gradient statistics, from one sigmoid and one softplus.

    The target is one-hot, so the (N, C + 1) weight matrix is never built: every entry has the negative
    weight of its channel except the N positive ones (``logits[i, labels[i]]``), which are handled as a
    list of N values.  With ``sp = softplus(z)`` and ``p = sigmoid(z)``:

    * loss: ``sum_j neg_w_j * sum_{i: labels_i != j} sp_ij + sum_i pos_w_{l_i} * softplus(-z_{i, l_i})``
      (softplus(-z) is BCE(z, 1) without the cancellation of ``sp - z``);
    * gradient statistics: ``neg_j = neg_w_j * sum_{i: labels_i != j} p_ij`` and
      ``pos_j = pos_w_j * sum_{i: labels_i = j} (1 - p_ij)``;
    * backward, in closed form: ``w * (p - y)`` times the incoming gradient, ``loss_weight`` and the 1/N
      of the mean, from the ``p`` of the forward (its positive entries zeroed, so one multiplication by
      the per-channel negative weights covers the negatives, and the N positives are written after).

    So a call costs two element-wise passes and two column sums over the logits in the forward and one
    multiplication in the backward, about what autograd spends on a plain BCE.  Double backward is not
    supported (the head never needs it).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        logits: Tensor,
        labels: Tensor,
        pos_w: Tensor,
        neg_w: Tensor,
        reduction: str,
        loss_weight: float,
    ) -> tuple[Tensor, Tensor, Tensor]:
        num_rois = logits.size(0)
        rows = torch.arange(num_rois, device=logits.device)
        pos_w_of_roi = pos_w[labels]  # (N,): the weight of each RoI's positive entry
        z_pos = logits[rows, labels]

        p = torch.sigmoid(logits)
        p_pos = p[rows, labels]
        p[rows, labels] = 0  # p holds the negative entries only from here on
        pos_inc = torch.zeros_like(pos_w).index_add_(0, labels, 1 - p_pos).mul_(pos_w)[:-1]
        neg_inc = (p.sum(dim=0) * neg_w)[:-1]

        sp = F.softplus(logits)  # BCE(z, 0); z > 20 is returned as is, the float32 value of softplus
        sp[rows, labels] = 0
        pos_loss = pos_w_of_roi * F.softplus(-z_pos)  # BCE(z, 1)
        if reduction == "none":
            loss = sp.mul_(neg_w * loss_weight)
            loss[rows, labels] = pos_loss * loss_weight
        else:
            # (not torch.dot or mv: CUDA autocast would run those in float16)
            loss = ((sp.sum(dim=0) * neg_w).sum() + pos_loss.sum()) * loss_weight
            if reduction == "mean":
                loss = loss / max(num_rois, 1)

        ctx.mark_non_differentiable(pos_inc, neg_inc)
        ctx.reduction, ctx.loss_weight = reduction, loss_weight
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(p, p_pos, labels, pos_w_of_roi, neg_w)
        return loss, pos_inc, neg_inc

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad_loss: Tensor, *_stat_grads: Tensor
    ) -> tuple[Tensor | None, ...]:
        p_neg, p_pos, labels, pos_w_of_roi, neg_w = ctx.saved_tensors
        num_rois = p_neg.size(0)
        rows = torch.arange(num_rois, device=p_neg.device)
        if ctx.reduction == "none":
            grad = torch.mul(p_neg, neg_w * ctx.loss_weight).mul_(grad_loss)
            pos_scale = grad_loss[rows, labels] * ctx.loss_weight
        else:
            scale = grad_loss * ctx.loss_weight
            if ctx.reduction == "mean":
                scale = scale / max(num_rois, 1)
            grad = torch.mul(p_neg, neg_w * scale)
            pos_scale = scale
        grad[rows, labels] = pos_w_of_roi * (p_pos - 1) * pos_scale
        return grad, None, None, None, None, None


def eqlv2_loss_and_increments(
    cls_score: Tensor,
    labels: Tensor,
    pos_w: Tensor,
    neg_w: Tensor,
    reduction: str = "mean",
    loss_weight: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """The weighted sigmoid BCE of EQLv2 and this call's contribution to ``pos_grad`` and ``neg_grad``.

    The loss is ``loss_weight * sum_ij w_ij * BCE(z_ij, y_ij)`` (divided by N for ``'mean'``), with the
    one-hot target y (label C is the background channel) and ``w_ij = pos_w_j`` where ``y_ij = 1``,
    ``neg_w_j`` elsewhere.  The increments are the magnitudes of the gradients this weighted BCE sends to
    each class logit, before the 1/N of the mean and without ``loss_weight``: ``dBCE/dz = p - y``, so the
    positive part is ``y * w * (1 - p)`` and the negative part ``(1 - y) * w * p``, summed over the RoIs.
    They are not part of the graph.  Both come from one sigmoid (see :class:`_EQLv2BCE`).

    Args:
        cls_score (Tensor): Float logits, shape (N, C + 1), background channel last.
        labels (Tensor): Labels in ``[0, C]``, shape (N,); C is background.
        pos_w (Tensor): Positive weight of each channel, shape (C + 1,).
        neg_w (Tensor): Negative weight of each channel, shape (C + 1,).
        reduction (str, optional): ``'mean'`` sums over RoIs and channels and divides by N (the
            original's normaliser; 0 when N = 0), ``'sum'`` only sums, ``'none'`` returns the (N, C + 1)
            weighted element-wise loss. Defaults to 'mean'.
        loss_weight (float, optional): Factor of the loss (not of the increments). Defaults to 1.0.

    Returns:
        tuple[Tensor, Tensor, Tensor]: The loss, and the positive and negative increments, two tensors of
        shape (C,) (background excluded) in the dtype of the logits.
    """
    dtype = cls_score.dtype
    return _EQLv2BCE.apply(
        cls_score, labels.long(), pos_w.to(dtype), neg_w.to(dtype), reduction, float(loss_weight)
    )


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@MODELS.register_module()
class EQLv2(nn.Module):
    """Equalization Loss v2, `arXiv:2012.08548 <https://arxiv.org/abs/2012.08548>`_.

    A sigmoid classification loss for two-stage detectors whose per-class positive and negative weights are
    driven by the accumulated gradient ratio of each class (see the module docstring for the formulas).
    ``fc_cls`` gets C + 1 outputs: C classes and a background detector last.

    The statistics ``pos_grad`` (C,), ``neg_grad`` (C,) and ``pos_neg`` (C,) are buffers, so they are saved
    in checkpoints under ``roi_head.bbox_head.loss_cls.{pos_grad,neg_grad,pos_neg}`` and restored on resume.
    Every call of :meth:`forward` updates them, so call it once per training iteration.

    The classifier bias should start at the sigmoid prior ``bias_init_with_prob(0.001)``, as in the
    original; pass :data:`eqlv2.models.SIGMOID_PRIOR_INIT_CFG` as the bbox head's ``init_cfg``.

    Args:
        num_classes (int): Number of foreground classes C (1203 for LVIS v1, 1230 for v0.5, 500 for
            OpenImages). Must equal the head's ``num_classes``.
        gamma (float, optional): Steepness of the mapping function. Defaults to 12.
        mu (float, optional): Centre of the mapping function. Defaults to 0.8.
        alpha (float, optional): Boost of the positive gradients. Defaults to 4.0.
        test_with_obj (bool, optional): Multiply each class probability by ``1 - p(background)`` at test
            time. Defaults to True.
        loss_weight (float, optional): Weight of the loss. Defaults to 1.0.
    """

    def __init__(
        self,
        num_classes: int,
        gamma: float = 12,
        mu: float = 0.8,
        alpha: float = 4.0,
        test_with_obj: bool = True,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.gamma = gamma
        self.mu = mu
        self.alpha = alpha
        self.test_with_obj = test_with_obj
        self.loss_weight = loss_weight
        self.use_sigmoid = True

        self.register_buffer("pos_grad", torch.zeros(num_classes))
        self.register_buffer("neg_grad", torch.zeros(num_classes))
        # A large starting ratio maps to q = 1, i.e. pos_w = neg_w = 1: plain BCE until statistics exist.
        self.register_buffer("pos_neg", torch.ones(num_classes) * 100)

        # mmdet 3 head hooks.  The head reads them crosswise (fc_cls size and test activation from
        # custom_cls_channels, accuracy and cascade activation from custom_activation), so set all three.
        self.custom_cls_channels = True
        self.custom_activation = True
        self.custom_accuracy = True

        print_log(
            f"build EQL v2, gamma: {gamma}, mu: {mu}, alpha: {alpha}", logger="current", level=logging.INFO
        )

    def get_weights(self) -> tuple[Tensor, Tensor]:
        """(pos_w, neg_w), each (C + 1,), from the statistics accumulated so far."""
        return eqlv2_weights(self.pos_neg, self.gamma, self.mu, self.alpha)

    def forward(
        self,
        cls_score: Tensor,
        labels: Tensor,
        label_weights: Tensor | None = None,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        """Weighted BCE with this iteration's weights, then update the gradient statistics.

        Args:
            cls_score (Tensor): Logits, shape (N, C + 1), background channel last.
            labels (Tensor): Labels in ``[0, C]``, shape (N,); C is background.
            label_weights (Tensor, optional): Accepted for the head's signature and **not used**, like the
                original (mmdet's standard RoI sampler gives every sampled RoI weight 1 anyway).
            avg_factor (float, optional): Accepted and **not used**: the normaliser is N, the number of RoIs,
                as in the original. Defaults to None.
            reduction_override (str, optional): None or ``'mean'`` (sum / N), ``'sum'`` or ``'none'``.

        Returns:
            Tensor: The loss, times ``loss_weight``.
        """
        assert reduction_override in (None, "none", "mean", "sum")
        reduction = reduction_override or "mean"
        if avg_factor is not None and reduction == "sum":
            raise ValueError('avg_factor can not be used with reduction="sum"')
        assert cls_score.dim() == 2 and cls_score.size(-1) == self.num_classes + 1, (
            f"EQLv2 expects (N, {self.num_classes + 1}) logits, got {tuple(cls_score.shape)}"
        )

        pos_w, neg_w = self.get_weights()
        # Float32 whatever autocast made of the logits (mixed precision): in float16/bfloat16 the weights
        # 1 + alpha * (1 - q) would be rounded, and so would the loss and the statistics built on them.
        logits = cls_score.float()
        loss, pos, neg = eqlv2_loss_and_increments(logits, labels, pos_w, neg_w, reduction, self.loss_weight)
        self.collect_grad(pos, neg, logits.size(0))
        return loss

    @torch.no_grad()
    def collect_grad(self, pos: Tensor, neg: Tensor, num_rois: int) -> None:
        """Accumulate this call's gradient increments (each (C,), from :func:`eqlv2_loss_and_increments`
        on ``num_rois`` RoIs) into ``pos_grad``/``neg_grad`` and refresh ``pos_neg``.

        The increments are summed over all processes first, so every rank holds the statistics of the
        global batch and computes the same weights next time (DDP does not broadcast buffers in mmdet).
        The collective runs even for an empty batch, so no rank can fall out of step.

        When the global batch has no RoI at all, nothing changes.  (The original would still recompute
        ``pos_neg``, which before any statistics exist turns the starting ratio 100 into 0/1e-10 = 0 and
        switches on the rare-class weights for every class.  mmdet's head never calls the loss with an
        empty batch, so this only matters when the loss is called directly.)
        """
        num_rois = pos.new_tensor([num_rois])
        if _distributed():
            increments = torch.cat([pos, neg, num_rois])
            dist.all_reduce(increments, op=dist.ReduceOp.SUM)
            pos, neg = increments[: self.num_classes], increments[self.num_classes : 2 * self.num_classes]
            num_rois = increments[-1:]
        # An empty global batch adds zeros; only the ratio refresh has to be skipped (without a host sync).
        self.pos_grad += pos.to(self.pos_grad.dtype)
        self.neg_grad += neg.to(self.neg_grad.dtype)
        ratio = self.pos_grad / (self.neg_grad + 1e-10)
        self.pos_neg = torch.where(num_rois.to(ratio.device) > 0, ratio, self.pos_neg)

    def get_cls_channels(self, num_classes: int) -> int:
        """C class logits plus the background logit."""
        assert num_classes == self.num_classes, (
            f"EQLv2(num_classes={self.num_classes}) is used in a head with num_classes={num_classes}"
        )
        return num_classes + 1

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """Test-time probabilities, shape (N, C + 1), background last (mmdet's NMS drops that column).

        ``p = sigmoid(z)`` on every channel; with ``test_with_obj`` each class probability is multiplied by
        ``1 - p(background)``.
        """
        scores = torch.sigmoid(cls_score)
        if not self.test_with_obj:
            return scores
        return torch.cat([scores[:, :-1] * (1 - scores[:, -1:]), scores[:, -1:]], dim=1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Logged accuracies (percent), in the shape of ``SeesawLoss``'s.

        * ``acc_objectness``: the background channel as a binary classifier (background iff
          ``p(background) > 0.5``), over all RoIs.
        * ``acc_classes``: argmax over the C class channels, over the foreground RoIs only (0 when there
          are none).
        """
        is_bg = labels == self.num_classes
        if labels.numel() == 0:
            acc_objectness = cls_score.new_tensor(0.0)
        else:
            acc_objectness = ((cls_score[:, -1] > 0) == is_bg).float().mean() * 100
        fg = ~is_bg
        acc_classes = accuracy(cls_score[fg][:, :-1], labels[fg])
        return {"acc_objectness": acc_objectness, "acc_classes": acc_classes}
