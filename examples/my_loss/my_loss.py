"""An example of a method of one's own: a focal sigmoid loss for the RoI classifier of a two-stage detector.

Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, https://arxiv.org/abs/1708.02002,
eq. (5): ``FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)``, with ``p_t = p`` where the target is 1 and
``1 - p`` where it is 0, and ``alpha_t = alpha`` or ``1 - alpha`` likewise (the paper's defaults:
gamma 2, alpha 0.25).  The paper applies it to RetinaNet's anchors; here it replaces the softmax
cross-entropy of Mask R-CNN's box head, in the layout of this package's sigmoid losses (EQLv2): C + 1
sigmoid logits, the last one a background detector that a background RoI has its target on.  The
modulating factor ``(1 - p_t)^gamma`` turns down the loss of the RoIs already classified well, which in a
long-tailed set are mostly the frequent classes' and the background's negatives.

This file is outside the package on purpose: it is the template of examples/my_loss/, which the README's
"Adding your own method" walks through.  What a loss needs to plug into mmdet 3's box head:

* registration in mmdet's ``MODELS`` (the config names it by ``type``);
* ``custom_cls_channels`` with :meth:`get_cls_channels`: the head sizes ``fc_cls`` from it (C + 1 here);
* ``custom_activation`` with :meth:`get_activation` (test-time scores, background column last, which
  mmdet's NMS drops) and ``custom_accuracy`` with :meth:`get_accuracy` (what the training log shows
  instead of softmax accuracy); the head reads the first two crosswise, so set all three;
* ``forward(cls_score, labels, label_weights, avg_factor, reduction_override)``, the head's call.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from mmdet.models.losses import accuracy
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS
from mmengine.logging import print_log
from torch import Tensor, nn


def roi_focal_loss(logits: Tensor, labels: Tensor, gamma: float, alpha: float) -> Tensor:
    """The focal loss of each RoI, summed over its C + 1 channels, shape (N,).

    Args:
        logits (Tensor): Logits, shape (N, C + 1), background channel last.
        labels (Tensor): Labels in ``[0, C]``, shape (N,); C is background.
        gamma (float): Focusing parameter; 0 gives the alpha-weighted sigmoid BCE.
        alpha (float): Weight of the positive (target 1) entries, ``1 - alpha`` of the negative ones.
    """
    targets = F.one_hot(labels, logits.size(1)).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # -log(p_t), stable
    p = torch.sigmoid(logits)
    p_t = torch.where(targets > 0, p, 1 - p)
    alpha_t = torch.where(targets > 0, alpha, 1 - alpha)
    return (alpha_t * (1 - p_t).pow(gamma) * bce).sum(dim=1)


@MODELS.register_module()
class RoIFocalLoss(nn.Module):
    """Focal sigmoid loss over C classes and a background channel, for mmdet's ``BBoxHead``.

    Args:
        num_classes (int): Number of foreground classes C; must equal the head's ``num_classes``.
        gamma (float, optional): Focusing parameter. Defaults to 2.0 (the paper's).
        alpha (float, optional): Weight of the positive entries. Defaults to 0.25 (the paper's).
        test_with_obj (bool, optional): At test time multiply each class probability by
            ``1 - p(background)``, as EQLv2 does. Defaults to True.
        loss_weight (float, optional): Weight of the loss. Defaults to 1.0.
    """

    def __init__(
        self,
        num_classes: int,
        gamma: float = 2.0,
        alpha: float = 0.25,
        test_with_obj: bool = True,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0 <= alpha <= 1:
            raise ValueError(f"RoIFocalLoss: alpha must lie in [0, 1], got {alpha}")
        self.num_classes = num_classes
        self.gamma = gamma
        self.alpha = alpha
        self.test_with_obj = test_with_obj
        self.loss_weight = loss_weight
        self.use_sigmoid = True
        self.custom_cls_channels = True
        self.custom_activation = True
        self.custom_accuracy = True
        # One line in the training log that says this loss, with these parameters, was built.
        print_log(f"build RoIFocalLoss, gamma: {gamma}, alpha: {alpha}", logger="current", level=logging.INFO)

    def forward(
        self,
        cls_score: Tensor,
        labels: Tensor,
        label_weights: Tensor | None = None,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        """The loss of the head's sampled RoIs: each RoI's focal loss (summed over its channels), times its
        label weight, averaged over ``avg_factor`` (mmdet's head passes the number of RoIs).

        Computed in float32 whatever autocast made of the logits, so that ``(1 - p_t)^gamma`` of a
        well-classified entry does not round to 0 in float16.
        """
        assert reduction_override in (None, "none", "mean", "sum")
        assert cls_score.dim() == 2 and cls_score.size(1) == self.num_classes + 1, (
            f"RoIFocalLoss expects (N, {self.num_classes + 1}) logits, got {tuple(cls_score.shape)}"
        )
        loss = roi_focal_loss(cls_score.float(), labels.long(), self.gamma, self.alpha)
        weight = None if label_weights is None else label_weights.float()
        loss = weight_reduce_loss(loss, weight, reduction_override or "mean", avg_factor)
        return self.loss_weight * loss

    def get_cls_channels(self, num_classes: int) -> int:
        """C class logits and the background logit."""
        assert num_classes == self.num_classes, (
            f"RoIFocalLoss(num_classes={self.num_classes}) is used in a head with num_classes={num_classes}"
        )
        return num_classes + 1

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """Test-time probabilities, shape (N, C + 1), background last."""
        scores = torch.sigmoid(cls_score)
        if self.test_with_obj:
            scores = torch.cat([scores[:, :-1] * (1 - scores[:, -1:]), scores[:, -1:]], dim=1)
        return scores

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Logged accuracies (percent): the background channel as a binary classifier over all RoIs
        (``acc_objectness``), and the argmax of the C class channels over the foreground RoIs
        (``acc_classes``, 0 when there are none)."""
        is_bg = labels == self.num_classes
        if labels.numel():
            acc_objectness = ((cls_score[:, -1] > 0) == is_bg).float().mean() * 100
        else:
            acc_objectness = cls_score.new_tensor(0.0)
        return {
            "acc_objectness": acc_objectness,
            "acc_classes": accuracy(cls_score[~is_bg][:, :-1], labels[~is_bg]),
        }
