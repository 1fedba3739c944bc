"""Effective Class-Margin Loss (ECM), written from the paper's formulas.

Cho and Krähenbühl, "Long-tail Detection with Effective Class-Margins", ECCV 2022,
https://arxiv.org/abs/2301.09724.

The paper bounds LVIS mAP by a margin-based binary classification error per class and derives, for each
class c with n+_c positive and n-_c negative training samples, the margins that make the bound tightest
(its Eq. 8) and the weight of the class in the bound (Theorem 2):

    gamma+_c = n-_c^(1/4) / (n+_c^(1/4) + n-_c^(1/4)),    gamma-_c = n+_c^(1/4) / (n+_c^(1/4) + n-_c^(1/4)),
    a_c = n-_c / n+_c,                                     omega_c = a_c * log(1 + 1 / a_c).

The loss (its Eqs. 10-11) is a weighted binary cross-entropy of the margin-shifted score

    s^_ic = (e^(z_ic) / gamma+_c) / (e^(z_ic) / gamma+_c + e^(-z_ic) / gamma-_c),
    loss  = loss_weight * sum_ic omega_c * BCE(s^_ic, y_ic) / N,

over the N RoIs of the batch and C + 1 channels (y the one-hot target, the background last).  Dividing
through, ``s^ = sigmoid(2 z + log(gamma-/gamma+)) = sigmoid(2 z + log(n+/n-) / 4)``, so the loss is
``omega_c * BCE_with_logits(2 z + log(n+_c/n-_c) / 4, y)``: a rare class's positive logit is shifted down
(it must be pushed further to count as right), its negatives up.  That form is what is computed here:
one softplus of the shifted logits and one gathered target entry per RoI, no one-hot; the gradient, in
closed form, is ``2 omega_c (s^ - y) / N``.

Facts taken from the authors' code (janghyuncho/ECM-Loss, ``mmdet/models/losses/
effective_class_margin_loss.py`` and ``ecm_utils.py``, mmdet 2.24; the same in the mmdet 3 port,
open-mmlab/mmdetection PR #10971), not from its text:

* The counts are LVIS v1's training **image counts** (``lvis_v1_image_count.pkl``), so
  n+_c = ``image_count`` of c.  Here they are read from the run's training annotations with EQL's
  reader (:func:`eqlv2.models.losses.eql.load_category_statistics`, ``frequency='image'``), which
  ``eqlv2 train`` points at the run's training file; the margins and weights depend only on the ratios
  of the counts, so the reader's division by the number of images changes nothing.
* The classifier has C + 1 sigmoid logits; the background is a class like the others, with the count
  n_bg = ``fg_bg_ratio * sum_c n_c`` (``fg_bg_ratio = 6.3313``, "empirical fg-bg ratio from Mask-RCNN"),
  and its own margin and weight.
* n-_c = sum_k n_k - n_c, the sum over all C + 1 counts, the background's included.
* The normaliser is the number of RoIs N (``label_weights`` and ``avg_factor`` are not used).
* At test time the margins are not applied: each class scores ``sigmoid(z_c) * (1 - sigmoid(z_bg))``
  (the hooks of :class:`~eqlv2.models.losses.sigmoid_head.SigmoidClassifierHooks` with a background
  logit).

Where it departs from that code: a class without a training image is refused in one line (its margin
would be infinite); ``reduction_override`` ``'sum'`` and ``'none'`` are honoured; the loss is computed in
float32 whatever autocast made of the logits.  The published model also used RFS, a cosine classifier
(``NormedLinear``, temperature 20) and a normed mask head; those are recipe, not loss, and this project's
ECM config leaves them out so that the row differs from the baseline by the loss alone.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.logging import print_log
from torch import Tensor, nn

from .eql import load_category_statistics
from .sigmoid_head import SigmoidClassifierHooks

__all__ = ["ECMLoss", "effective_class_margins"]


class _ECMBCE(torch.autograd.Function):
    """``sum_ic omega_c * BCE_with_logits(2 z_ic + shift_c, y_ic)`` without the (N, C + 1) one-hot.

    With ``x = 2 z + shift`` the BCE is ``softplus(x) - y x``; the target term is one gathered entry per
    RoI.  The backward is the closed form ``2 omega (sigmoid(x) - y)`` times the incoming gradient (double
    backward is not supported; the head never needs it).
    """

    @staticmethod
    def forward(
        ctx, logits: Tensor, labels: Tensor, shift: Tensor, weight: Tensor, elementwise: bool
    ) -> Tensor:
        x = torch.add(shift, logits, alpha=2)
        rows = torch.arange(labels.numel(), device=labels.device)
        loss = F.softplus(x).mul_(weight)
        target_term = x[rows, labels] * weight[labels]
        if elementwise:
            loss[rows, labels] -= target_term
        else:
            loss = loss.sum() - target_term.sum()
        ctx.elementwise = elementwise
        ctx.save_for_backward(x, labels, weight)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        x, labels, weight = ctx.saved_tensors
        rows = torch.arange(labels.numel(), device=labels.device)
        grad = torch.sigmoid(x)
        grad[rows, labels] -= 1
        grad.mul_(weight * 2).mul_(grad_loss)
        return grad, None, None, None, None


def effective_class_margins(image_count: Tensor, fg_bg_ratio: float) -> tuple[Tensor, Tensor, Tensor]:
    """The margins gamma+, gamma- and the weights omega of the C classes and the background, float64.

    Args:
        image_count (Tensor): n+_c of the C foreground classes (raw counts or frequencies), shape (C,).
        fg_bg_ratio (float): The background's count as a multiple of the classes' total.

    Returns:
        tuple[Tensor, Tensor, Tensor]: ``(gamma_pos, gamma_neg, omega)``, each of shape (C + 1,), the
        background last.

    Raises:
        ValueError: A class with no training image, or ``fg_bg_ratio <= 0``.
    """
    if not fg_bg_ratio > 0:
        raise ValueError(f"ECMLoss: fg_bg_ratio must be positive, got {fg_bg_ratio}")
    counts = image_count.to(torch.float64)
    empty = torch.nonzero(counts <= 0).flatten().tolist()
    if empty:
        raise ValueError(
            f"ECMLoss: {len(empty)} classes have no training image (first labels: {empty[:5]}); "
            "their margin would be infinite"
        )
    n_pos = torch.cat([counts, counts.sum()[None] * fg_bg_ratio])
    n_neg = n_pos.sum() - n_pos
    root_pos, root_neg = n_pos**0.25, n_neg**0.25
    gamma_pos = root_neg / (root_pos + root_neg)
    gamma_neg = root_pos / (root_pos + root_neg)
    ratio = n_neg / n_pos  # a_c of Theorem 2
    omega = ratio * torch.log1p(1 / ratio)
    return gamma_pos, gamma_neg, omega


@MODELS.register_module()
class ECMLoss(SigmoidClassifierHooks, nn.Module):
    """Effective Class-Margin Loss, `arXiv:2301.09724 <https://arxiv.org/abs/2301.09724>`_ (see the
    module docstring for the formulas and what comes from where).

    ``fc_cls`` gets C + 1 outputs, the background last.  As for EQLv2, the classifier bias should start at
    the sigmoid prior (:data:`eqlv2.models.SIGMOID_PRIOR_INIT_CFG`).

    Args:
        num_classes (int): Number of foreground classes C; must match the categories in ``ann_file``.
        ann_file (str): LVIS-format *training* annotation JSON with per-category ``image_count``.  Give
            the full path: the loss does not know ``data_root`` (``eqlv2 train`` sets it).
        fg_bg_ratio (float, optional): The background count as a multiple of the summed image counts.
            Defaults to 6.3313 (the authors' figure for Mask R-CNN on LVIS v1).
        loss_weight (float, optional): Weight of the loss. Defaults to 1.0.
    """

    background_logit = True

    def __init__(
        self, num_classes: int, ann_file: str, fg_bg_ratio: float = 6.3313, loss_weight: float = 1.0
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ann_file = ann_file
        self.fg_bg_ratio = fg_bg_ratio
        self.loss_weight = loss_weight
        self.use_sigmoid = True

        frequency = load_category_statistics(ann_file, num_classes, "image")
        try:
            gamma_pos, gamma_neg, omega = effective_class_margins(frequency, fg_bg_ratio)
        except ValueError as err:
            raise ValueError(f"{ann_file}: {err}") from None
        # Constants derived from ann_file: they move with .to(device) and stay out of checkpoints.
        self.register_buffer("gamma_pos", gamma_pos.float(), persistent=False)
        self.register_buffer("gamma_neg", gamma_neg.float(), persistent=False)
        self.register_buffer("class_weight", omega.float(), persistent=False)
        # log(gamma-/gamma+) = log(n+/n-) / 4, the shift of the doubled logit, from the float64 margins
        self.register_buffer("logit_shift", torch.log(gamma_neg / gamma_pos).float(), persistent=False)

        print_log(
            f"set up ECM loss: {num_classes} classes + background (fg_bg_ratio={fg_bg_ratio}), logit shifts "
            f"{self.logit_shift[:-1].min():.3f} to {self.logit_shift[:-1].max():.3f}, "
            f"background {self.logit_shift[-1]:.3f}",
            logger="current",
            level=logging.INFO,
        )

    def forward(
        self,
        cls_score: Tensor,
        labels: Tensor,
        label_weights: Tensor | None = None,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        """The ECM loss of the RoIs.

        Args:
            cls_score (Tensor): Logits, shape (N, C + 1), the background last.
            labels (Tensor): Labels in ``[0, C]``, shape (N,); C is background.
            label_weights (Tensor, optional): Accepted for the head's signature and not used.
            avg_factor (float, optional): Accepted and not used: the normaliser is N, as in the authors'
                code.
            reduction_override (str, optional): None or ``'mean'`` (sum / N, 0 when N = 0), ``'sum'``, or
                ``'none'`` for the (N, C + 1) weighted element-wise loss.

        Returns:
            Tensor: The loss, times ``loss_weight``, in float32.

        Raises:
            ValueError: A label outside ``[0, C]``, or ``avg_factor`` with ``'sum'``.
        """
        assert reduction_override in (None, "none", "mean", "sum")
        reduction = reduction_override or "mean"
        if avg_factor is not None and reduction == "sum":
            raise ValueError('avg_factor can not be used with reduction="sum"')
        assert cls_score.dim() == 2 and cls_score.size(-1) == self.num_classes + 1, (
            f"ECMLoss expects (N, {self.num_classes + 1}) logits, got {tuple(cls_score.shape)}"
        )
        labels = labels.long()
        if labels.numel() and not bool(((labels >= 0) & (labels <= self.num_classes)).all()):
            raise ValueError(f"labels must lie in [0, {self.num_classes}] ({self.num_classes} = background)")

        # omega-weighted BCE of 2 z + log(gamma-/gamma+), in float32 whatever autocast made of the logits
        loss = _ECMBCE.apply(
            cls_score.float(), labels, self.logit_shift, self.class_weight, reduction == "none"
        )
        loss = loss * self.loss_weight
        if reduction == "mean":
            loss = loss / max(cls_score.size(0), 1)
        return loss
