"""Federated Loss, written from the paper and detectron2's documented behaviour.

Zhou, Koltun and Krähenbühl, "Probabilistic two-stage detection", 2021, https://arxiv.org/abs/2103.07461;
detectron2's ``FastRCNNOutputLayers`` with ``use_fed_loss=True`` (``fed_loss_num_classes=50``,
``fed_loss_freq_weight_power=0.5``).

LVIS is *federated*: an image is exhaustively annotated only for some classes, so a sigmoid BCE that
pushes every one of the 1203 classes down on every RoI mostly trains the rare classes as negatives on
images where nobody checked for them.  The Federated Loss keeps the sigmoid BCE but, in each iteration,
lets only a subset S of the classes enter it:

* every class among the labels of the iteration's RoIs (the ground-truth classes of the batch: mmdet's
  sampler adds the ground-truth boxes as proposals, so each appears as a RoI label) is in S;
* the rest of S is drawn *without replacement* from the other classes, with probability proportional to
  ``image_count_j ** freq_weight_power`` (the class's number of training images), until S holds
  ``fed_loss_num_classes`` classes.  When the ground truth alone has more classes, S is the ground truth
  and nothing is drawn.

The loss is ``loss_weight * sum_{i, j in S} BCE(z_ij, y_ij) / N`` over the N RoIs, with y the one-hot
target; a background RoI has an all-zero target.  The classes outside S are not in the sum at all, so
their logits get exactly zero gradient (the BCE is computed on the columns of S only).

The per-class image counts are read from the training annotation file (LVIS format), with the same
reader as EQL (:func:`eqlv2.models.losses.eql.load_category_statistics`), and ``eqlv2 train`` points
``ann_file`` at the run's training annotations as it does for EQL.

Where it departs from detectron2, and why:

* The classifier has C sigmoid logits and no background logit, like EQL here.  detectron2 keeps the
  C + 1 outputs of its softmax head and drops the last one from the loss (it never gets a gradient) and
  from the scores; without it the function is the same and no parameter is dead.  At test time
  :meth:`FederatedLoss.get_activation` appends an all-zero background column for mmdet's NMS.
* S holds ``fed_loss_num_classes`` *foreground* classes.  detectron2 counts the background label among
  the "ground-truth classes" (``torch.unique`` of the RoI labels includes it whenever a background RoI
  is sampled, which is always) and cuts it off afterwards, so its S has 49 classes.  Here S has the
  documented 50.
* A class with no training image has weight 0 and is never drawn.  When fewer classes are left to draw
  from than are missing, all of them are taken (detectron2's ``torch.multinomial`` would raise).
* The draws come from a ``torch.Generator`` on the CPU owned by the loss, seeded with ``seed`` (plus the
  rank under an initialised process group), not from the global RNG on the device: the same seed gives
  the same subsets whatever the device, the data loader's or the model's use of randomness.  Costs one
  host copy of the RoI labels per iteration (a few hundred integers).
* Under a process group each rank draws its own subset from its own RoIs with its own stream
  (``seed + rank``), as detectron2 does (its per-rank seeding is ``seed + rank`` too); no collective is
  needed.  The generator is seeded at the first draw, so it sees the process group mmengine sets up
  after building the model.  Its state is not checkpointed: a resumed run draws from the seed again.
* ``reduction_override='sum'`` and ``'none'`` are honoured; the default ``'mean'`` divides by N, like
  detectron2 (0 for an empty batch, with a graph).  ``label_weights`` and ``avg_factor`` are accepted
  and not used, as for EQL.
* Under mixed precision the logits arrive in float16/bfloat16; the loss is computed in float32.
"""

from __future__ import annotations

import logging

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.logging import print_log
from torch import Tensor, nn

from .eql import load_category_statistics
from .sigmoid_head import SigmoidClassifierHooks

__all__ = ["FederatedLoss", "federated_sampling_weights"]


def federated_sampling_weights(image_frequency: Tensor, freq_weight_power: float) -> Tensor:
    """Probability of each class to be drawn, ``f_j ** power / sum_k f_k ** power``, float64, shape (C,).

    ``f`` may be the raw image counts or the counts divided by the number of images: the normalisation
    cancels the common factor.

    Raises:
        ValueError: No class has a positive frequency (nothing could ever be drawn).
    """
    weights = image_frequency.to(torch.float64).clamp(min=0) ** freq_weight_power
    weights[image_frequency <= 0] = 0  # 0 ** 0 would be 1: a class without images is never drawn
    total = weights.sum()
    if not total > 0:
        raise ValueError("FederatedLoss: no class has a training image, there is nothing to sample from")
    return weights / total


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@MODELS.register_module()
class FederatedLoss(SigmoidClassifierHooks, nn.Module):
    """Federated Loss, `arXiv:2103.07461 <https://arxiv.org/abs/2103.07461>`_ (see the module docstring).

    ``fc_cls`` gets C outputs (no background channel).  As for EQL and EQLv2, the classifier bias should
    start at the sigmoid prior (:data:`eqlv2.models.SIGMOID_PRIOR_INIT_CFG`).

    Args:
        num_classes (int): Number of foreground classes C; must match the categories in ``ann_file``.
        ann_file (str): LVIS-format *training* annotation JSON with per-category ``image_count``.  Give
            the full path: the loss does not know ``data_root`` (``eqlv2 train`` sets it).
        fed_loss_num_classes (int, optional): Size of the subset S: the ground-truth classes plus drawn
            ones. Defaults to 50 (detectron2's).
        freq_weight_power (float, optional): The draw probability is proportional to the image count to
            this power. Defaults to 0.5 (detectron2's).
        seed (int, optional): Seed of the loss's own generator; rank r of a process group uses
            ``seed + r``. Defaults to 0.
        loss_weight (float, optional): Weight of the loss. Defaults to 1.0.
    """

    def __init__(
        self,
        num_classes: int,
        ann_file: str,
        fed_loss_num_classes: int = 50,
        freq_weight_power: float = 0.5,
        seed: int = 0,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if fed_loss_num_classes < 1:
            raise ValueError(f"fed_loss_num_classes must be at least 1, got {fed_loss_num_classes}")
        self.num_classes = num_classes
        self.ann_file = ann_file
        self.fed_loss_num_classes = fed_loss_num_classes
        self.freq_weight_power = freq_weight_power
        self.seed = seed
        self.loss_weight = loss_weight
        self.use_sigmoid = True

        frequency = load_category_statistics(ann_file, num_classes, "image")
        # A plain CPU attribute, not a buffer: the draws run on the CPU generator, and model.half() or
        # .to(device) must not round or move the probabilities.
        self.sample_weights = federated_sampling_weights(frequency, freq_weight_power)
        self._generator: torch.Generator | None = None

        print_log(
            f"set up Federated Loss: {fed_loss_num_classes} of {num_classes} classes per iteration, "
            f"draw weight image_count^{freq_weight_power}, seed {seed}",
            logger="current",
            level=logging.INFO,
        )

    @property
    def generator(self) -> torch.Generator:
        """The loss's CPU generator, seeded with ``seed + rank`` at its first use."""
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed + _rank())
        return self._generator

    def select_classes(self, labels: Tensor) -> Tensor:
        """The subset S for RoIs with these labels: a sorted CPU long tensor of distinct class indices.

        The foreground labels' classes are all in; the others are drawn without replacement with
        :attr:`sample_weights` (renormalised over the classes not yet in S) until S has
        ``fed_loss_num_classes`` classes, or as many as have a positive weight.  Each call draws anew.

        Args:
            labels (Tensor): Labels in ``[0, C]``, shape (N,); C is background.
        """
        labels = labels.detach().cpu().long()
        gt_classes = torch.unique(labels[labels < self.num_classes])
        missing = self.fed_loss_num_classes - gt_classes.numel()
        if missing <= 0:
            return gt_classes
        prob = self.sample_weights.clone()
        prob[gt_classes] = 0
        num_drawn = min(missing, int((prob > 0).sum()))
        if num_drawn == 0:
            return gt_classes
        drawn = torch.multinomial(prob, num_drawn, replacement=False, generator=self.generator)
        return torch.cat([gt_classes, drawn]).sort().values

    def forward(
        self,
        cls_score: Tensor,
        labels: Tensor,
        label_weights: Tensor | None = None,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        """Sigmoid BCE over the RoIs and this call's subset S of the classes (drawn here).

        Args:
            cls_score (Tensor): Logits, shape (N, C).
            labels (Tensor): Labels in ``[0, C]``, shape (N,); C is background (all-zero target).
            label_weights (Tensor, optional): Accepted for the head's signature and not used.
            avg_factor (float, optional): Accepted and not used: the normaliser is N, as in detectron2.
            reduction_override (str, optional): None or ``'mean'`` (sum / N), ``'sum'``, or ``'none'``
                for the (N, C) element-wise loss, zero outside S.

        Returns:
            Tensor: The loss, times ``loss_weight``, in float32.

        Raises:
            ValueError: A label outside ``[0, C]``, or ``avg_factor`` with ``'sum'``.
        """
        assert reduction_override in (None, "none", "mean", "sum")
        reduction = reduction_override or "mean"
        if avg_factor is not None and reduction == "sum":
            raise ValueError('avg_factor can not be used with reduction="sum"')
        assert cls_score.dim() == 2 and cls_score.size(-1) == self.num_classes, (
            f"FederatedLoss expects (N, {self.num_classes}) logits, got {tuple(cls_score.shape)}"
        )
        labels = labels.long()
        if labels.numel() and not bool(((labels >= 0) & (labels <= self.num_classes)).all()):
            raise ValueError(f"labels must lie in [0, {self.num_classes}] ({self.num_classes} = background)")

        logits = cls_score.float()  # float32 whatever autocast made of the logits
        classes = self.select_classes(labels).to(logits.device)
        # Only the columns of S enter the graph: the others get an exact zero gradient.
        chosen = logits.index_select(1, classes)
        target = (labels[:, None] == classes[None, :]).to(chosen.dtype)  # background rows: all zero
        loss = F.binary_cross_entropy_with_logits(chosen, target, reduction="none") * self.loss_weight
        if reduction == "none":
            return logits.new_zeros(logits.shape).index_copy(1, classes, loss)
        if reduction == "sum":
            return loss.sum()
        return loss.sum() / max(logits.size(0), 1)
