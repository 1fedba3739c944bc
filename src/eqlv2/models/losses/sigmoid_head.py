"""The three head hooks of a classification loss over C sigmoid logits with no background logit (EQL,
Federated Loss): one place, so that every such loss scores, counts and logs its boxes the same way.

mmdet's ``BBoxHead`` asks its ``loss_cls`` for ``get_cls_channels`` (how many logits the classifier has),
``get_activation`` (the scores its post-processing sees, C + 1 columns with the background last) and
``get_accuracy`` (the accuracies it logs) when the loss sets ``custom_cls_channels``, ``custom_activation``
and ``custom_accuracy``.
"""

from __future__ import annotations

import torch
from mmdet.models.losses import accuracy
from torch import Tensor


class SigmoidClassifierHooks:
    """Head hooks for a loss with attribute ``num_classes`` (C) over (N, C) logits."""

    num_classes: int
    custom_cls_channels = True
    custom_activation = True
    custom_accuracy = True

    def get_cls_channels(self, num_classes: int) -> int:
        """C class logits, no background logit."""
        assert num_classes == self.num_classes, (
            f"{type(self).__name__}(num_classes={self.num_classes}) is used in a head with "
            f"num_classes={num_classes}"
        )
        return num_classes

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """Sigmoid over the C logits plus a zero background column: (N, C + 1), as the original head did,
        so that mmdet's per-class NMS reads the class scores unchanged."""
        scores = torch.sigmoid(cls_score)
        return torch.cat([scores, scores.new_zeros(scores.size(0), 1)], dim=1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Logged accuracies (percent).

        * ``acc_objectness``: foreground-vs-background, a RoI being called foreground when some class has
          ``p > 0.5`` (there is no background logit), over all RoIs.
        * ``acc_classes``: argmax over the C logits, over the foreground RoIs (0 when there are none).
        """
        is_fg = labels < self.num_classes
        if labels.numel() == 0:
            acc_objectness = cls_score.new_tensor(0.0)
        else:
            acc_objectness = ((cls_score > 0).any(dim=1) == is_fg).float().mean() * 100
        acc_classes = accuracy(cls_score[is_fg], labels[is_fg])
        return {"acc_objectness": acc_objectness, "acc_classes": acc_classes}
