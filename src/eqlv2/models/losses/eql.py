"""Equalization Loss (EQL v1), as in the authors' code (tztztztztz/eqlv2, ``mmdet/models/losses/eql.py``).

Tan et al., "Equalization Loss for Long-Tailed Object Recognition", CVPR 2020,
https://arxiv.org/abs/2003.05176.

The classifier has C sigmoid logits and no background channel (a background RoI has an all-zero target).
For a *foreground* RoI, the negative terms of the *tail* classes are dropped:

    w_ij = 1 - E(r_i) * T_lambda(f_j) * (1 - y_ij),   loss = loss_weight * sum_ij w_ij * BCE_ij / N

with E(r_i) = 1 for a foreground RoI and T_lambda(f_j) = 1 when the class frequency f_j < lambda.

The original embedded the LVIS category tables in Python modules; here the frequencies are read from the
training annotation file (LVIS format), which carries the same counts.  Two statistics are supported:

* ``frequency='image'`` (LVIS, the original's ``v0_5``/``v1``): f_j = ``image_count`` of category j divided
  by the number of distinct training images with at least one annotation; lambda = 0.0011 for LVIS v1
  (815 tail classes) and 0.00177 for v0.5.
* ``frequency='instance'`` (the original's ``openimage``): f_j = ``instance_count`` of category j, a raw
  count, so lambda is in instances (1652 for OpenImages challenge 2019, 250 of 500 classes).

The loss and its gradient are computed without the (N, C) one-hot and weight matrices, from one softplus
in the forward and one sigmoid in the backward (the closed form ``w * (p - y)``, a custom autograd
function): they cost about as much as a plain sigmoid BCE.  The values are the same up to float rounding.

The label of a category is its rank in the ``categories`` list sorted by ``id``, which is how mmdet's
LVIS datasets number LVIS (and how the original indexed its tables: ``id - 1``).
"""

from __future__ import annotations

import json
import logging
from os import PathLike
from typing import Any

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.logging import print_log
from torch import Tensor, nn

from .sigmoid_head import SigmoidClassifierHooks

__all__ = ["EQL", "eql_loss", "load_category_statistics", "load_ann_categories"]

_FREQUENCY_FIELDS = {"image": "image_count", "instance": "instance_count"}


def load_ann_categories(ann_file: str | PathLike, num_classes: int) -> tuple[list[dict[str, Any]], dict]:
    """Read an LVIS-format annotation JSON and return its categories sorted by id, and the whole document.

    Raises:
        ValueError: The file has no ``categories`` list, or it holds a different number of categories
            than ``num_classes``.
    """
    with open(ann_file, encoding="utf-8") as f:
        data = json.load(f)
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list):
        raise ValueError(f"{ann_file}: no 'categories' list; expected an LVIS-format annotation file")
    if len(categories) != num_classes:
        raise ValueError(
            f"{ann_file}: 'categories' has {len(categories)} entries but num_classes={num_classes}"
        )
    return sorted(categories, key=lambda c: c["id"]), data


def _category_field(ann_file: str | PathLike, categories: list[dict[str, Any]], field: str) -> list[float]:
    missing = [c.get("id") for c in categories if field not in c]
    if missing:
        raise ValueError(
            f"{ann_file}: {len(missing)} categories lack the field '{field}' (first ids: {missing[:5]}); "
            f"LVIS training files carry it, other files need it added (count the training annotations)"
        )
    return [float(c[field]) for c in categories]


def load_category_statistics(ann_file: str | PathLike, num_classes: int, frequency: str = "image") -> Tensor:
    """Per-class frequency f_j, shape (C,), in label order.

    Args:
        ann_file (str | PathLike): LVIS-format training annotation JSON.
        num_classes (int): Expected number of categories.
        frequency (str, optional): ``'image'``: ``image_count`` / number of distinct ``image_id`` in
            ``annotations``; ``'instance'``: raw ``instance_count``. Defaults to 'image'.

    Raises:
        ValueError: Unknown ``frequency``, wrong category count, a missing field, or (for ``'image'``) no
            annotations to count images from.
    """
    if frequency not in _FREQUENCY_FIELDS:
        raise ValueError(f"frequency must be one of {sorted(_FREQUENCY_FIELDS)}, got {frequency!r}")
    field = _FREQUENCY_FIELDS[frequency]
    categories, data = load_ann_categories(ann_file, num_classes)
    counts = torch.tensor(_category_field(ann_file, categories, field), dtype=torch.float64)
    if frequency == "instance":
        return counts
    annotations = data.get("annotations") or []
    num_images = len({a["image_id"] for a in annotations})
    if num_images == 0:
        raise ValueError(
            f"{ann_file}: no 'annotations' to count training images from (needed for frequency='image')"
        )
    return counts / num_images


class _EQLBCE(torch.autograd.Function):
    """The EQL sigmoid BCE without its (N, C) one-hot and weight matrices.

    A background RoI has no positive entry and weight 1 everywhere; a foreground RoI i has one positive
    entry ``(i, labels_i)`` of weight 1, and weight ``keep_j = 1 - T_lambda(f_j)`` on its negatives.  So
    with ``sp = softplus(z)`` (the BCE of a negative entry) the loss is the sum of ``sp`` over all
    negative entries, minus ``sum_j tail_j * sum_{i fg} sp_ij``, plus ``softplus(-z)`` (the BCE of a
    positive entry, without the cancellation of ``sp - z``) on the positive entries.  The backward is the
    closed form ``w * (p - y)``, times the incoming gradient, ``loss_weight`` and the 1/N of the mean.
    Double backward is not supported (the head never needs it).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        logits: Tensor,
        labels: Tensor,
        tail: Tensor,
        reduction: str,
        loss_weight: float,
    ) -> Tensor:
        num_rois, num_classes = logits.shape
        fg_rows = torch.nonzero(labels < num_classes).squeeze(1)  # E(r_i) = 1
        fg_labels = labels[fg_rows]
        z_pos = logits[fg_rows, fg_labels]
        sp = F.softplus(logits)  # z > 20 is returned as is, the float32 value of softplus
        sp[fg_rows, fg_labels] = 0  # sp holds the negative entries only from here on
        pos_loss = F.softplus(-z_pos)
        if reduction == "none":
            sp[fg_rows] = sp[fg_rows] * (1 - tail)
            loss = sp.mul_(loss_weight)
            loss[fg_rows, fg_labels] = pos_loss * loss_weight
        else:
            dropped = (sp[fg_rows].sum(dim=0) * tail).sum()
            loss = (sp.sum() - dropped + pos_loss.sum()) * loss_weight
            if reduction == "mean":
                loss = loss / max(num_rois, 1)
        ctx.reduction, ctx.loss_weight = reduction, loss_weight
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(logits, fg_rows, fg_labels, tail)
        return loss

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_loss: Tensor) -> tuple[Tensor | None, ...]:
        logits, fg_rows, fg_labels, tail = ctx.saved_tensors
        grad = torch.sigmoid(logits)
        p_pos = grad[fg_rows, fg_labels]
        scale = grad_loss * ctx.loss_weight  # (N, C) for 'none', else a scalar
        if ctx.reduction == "mean":
            scale = scale / max(logits.size(0), 1)
        pos_scale = scale[fg_rows, fg_labels] if ctx.reduction == "none" else scale
        grad.mul_(scale)
        grad[fg_rows] = grad[fg_rows] * (1 - tail)
        grad[fg_rows, fg_labels] = (p_pos - 1) * pos_scale
        return grad, None, None, None, None


def eql_loss(
    cls_score: Tensor, labels: Tensor, tail: Tensor, reduction: str = "mean", loss_weight: float = 1.0
) -> Tensor:
    """The EQL sigmoid BCE, ``loss_weight * sum_ij w_ij * BCE(z_ij, y_ij)`` (divided by N for ``'mean'``).

    Args:
        cls_score (Tensor): Float logits, shape (N, C).
        labels (Tensor): Labels in ``[0, C]``, shape (N,); C is background (all-zero target).
        tail (Tensor): T_lambda(f_j) as 0/1 floats, shape (C,).
        reduction (str, optional): ``'mean'`` = sum / N (0 when N = 0), ``'sum'``, or ``'none'`` for the
            (N, C) weighted element-wise loss. Defaults to 'mean'.
        loss_weight (float, optional): Factor of the loss. Defaults to 1.0.

    Raises:
        ValueError: A label outside ``[0, C]`` (it would otherwise pass as background, or index from the
            end).
    """
    num_classes = cls_score.size(-1)
    if labels.numel() and not bool(((labels >= 0) & (labels <= num_classes)).all()):
        raise ValueError(f"EQL labels must lie in [0, {num_classes}] ({num_classes} = background)")
    return _EQLBCE.apply(cls_score, labels.long(), tail.to(cls_score.dtype), reduction, float(loss_weight))


@MODELS.register_module()
class EQL(SigmoidClassifierHooks, nn.Module):
    """Equalization Loss, `arXiv:2003.05176 <https://arxiv.org/abs/2003.05176>`_.

    ``fc_cls`` gets C outputs (no background channel).  At test time the head receives sigmoid
    probabilities plus an all-zero background column.  As for EQLv2, the classifier bias should start at
    the 0.001 prior (:data:`eqlv2.models.SIGMOID_PRIOR_INIT_CFG`).

    Args:
        num_classes (int): Number of foreground classes C; must match the categories in ``ann_file``.
        lambda_ (float): Tail threshold: a class is "tail" when its frequency is below it (0.0011 for
            LVIS v1 with ``frequency='image'``, 1652 for OpenImages with ``frequency='instance'``).
        ann_file (str): LVIS-format *training* annotation JSON with per-category ``image_count`` (or
            ``instance_count``).  Give the full path: the loss does not know ``data_root``.
        loss_weight (float, optional): Weight of the loss. Defaults to 1.0.
        frequency (str, optional): ``'image'`` (image-count frequency, LVIS) or ``'instance'`` (raw
            training instance count, OpenImages). Defaults to 'image'.
    """

    def __init__(
        self,
        num_classes: int,
        lambda_: float,
        ann_file: str,
        loss_weight: float = 1.0,
        frequency: str = "image",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.lambda_ = lambda_
        self.ann_file = ann_file
        self.loss_weight = loss_weight
        self.frequency = frequency
        self.use_sigmoid = True

        freq = load_category_statistics(ann_file, num_classes, frequency)
        # Constant, derived from ann_file: moves with .to(device) but stays out of checkpoints.
        self.register_buffer("tail", (freq < lambda_).float(), persistent=False)

        print_log(
            f"set up EQL ({frequency} frequency, lambda={lambda_}), {int(self.tail.sum())} classes included.",
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
        """Args as :meth:`eqlv2.models.EQLv2.forward`; ``label_weights``/``avg_factor`` are not used, the
        normaliser is N, like the original."""
        assert reduction_override in (None, "none", "mean", "sum")
        reduction = reduction_override or "mean"
        if avg_factor is not None and reduction == "sum":
            raise ValueError('avg_factor can not be used with reduction="sum"')
        assert cls_score.dim() == 2 and cls_score.size(-1) == self.num_classes, (
            f"EQL expects (N, {self.num_classes}) logits, got {tuple(cls_score.shape)}"
        )
        # Float32 whatever autocast made of the logits (mixed precision), like the original's float32 run.
        return eql_loss(cls_score.float(), labels, self.tail, reduction, self.loss_weight)
