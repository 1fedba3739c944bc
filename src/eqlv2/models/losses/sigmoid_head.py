"""The three head hooks of a classification loss over C sigmoid logits with no background logit (EQL,
Federated Loss), or over C sigmoid logits and a background logit (ECM): one place, so that every such loss
scores, counts and logs its boxes the same way.

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
    """Head hooks for a loss with attribute ``num_classes`` (C) over (N, C) logits, or (N, C + 1) logits
    with the background last when the loss sets ``background_logit = True``."""

    num_classes: int
    background_logit = False
    custom_cls_channels = True
    custom_activation = True
    custom_accuracy = True

    def get_cls_channels(self, num_classes: int) -> int:
        """C class logits, plus one background logit where the loss has one."""
        assert num_classes == self.num_classes, (
            f"{type(self).__name__}(num_classes={self.num_classes}) is used in a head with "
            f"num_classes={num_classes}"
        )
        return num_classes + int(self.background_logit)

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """Test-time scores, (N, C + 1) with the background last (mmdet's NMS drops that column).

        Without a background logit: sigmoid over the C logits plus a zero background column, as the
        original head did, so that mmdet's per-class NMS reads the class scores unchanged.  With one:
        ``sigmoid(z_c) * (1 - sigmoid(z_bg))`` for each class, the background column ``sigmoid(z_bg)``.
        """
        scores = torch.sigmoid(cls_score)
        if self.background_logit:
            return torch.cat([scores[:, :-1] * (1 - scores[:, -1:]), scores[:, -1:]], dim=1)
        return torch.cat([scores, scores.new_zeros(scores.size(0), 1)], dim=1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Logged accuracies (percent).

        * ``acc_objectness``: foreground-vs-background over all RoIs.  Without a background logit a RoI is
          called foreground when some class has ``p > 0.5``; with one, when ``p(background) <= 0.5``.
        * ``acc_classes``: argmax over the C class logits, over the foreground RoIs (0 when there are none).
        """
        is_fg = labels < self.num_classes
        class_scores = cls_score[:, : self.num_classes]
        if labels.numel() == 0:
            acc_objectness = cls_score.new_tensor(0.0)
        else:
            called_fg = cls_score[:, -1] <= 0 if self.background_logit else (class_scores > 0).any(dim=1)
            acc_objectness = (called_fg == is_fg).float().mean() * 100
        acc_classes = accuracy(class_scores[is_fg], labels[is_fg])
        return {"acc_objectness": acc_objectness, "acc_classes": acc_classes}
