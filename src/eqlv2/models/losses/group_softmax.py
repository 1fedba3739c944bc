"""Balanced Group Softmax (BAGS), as in the EQLv2 authors' code (``mmdet/models/losses/group_softmax.py``).

Li et al., "Overcoming Classifier Imbalance for Long-tail Object Detection with Balanced Group Softmax",
CVPR 2020, https://arxiv.org/abs/2006.10408.

Classes are split into groups by their number of training instances, ``bisect_right(bin_split, count)``
(with the default ``(10, 100, 1000)``: <10, 10-99, 100-999, >=1000), plus one group holding only the
background.  Each group has its own softmax whose first logit, "others", stands for everything outside the
group.  The logits are laid out group after group::

    [others_0, classes of g0 (ascending label) ..., others_1, classes of g1 ..., ..., others_bg, background]

so ``fc_cls`` has C + 1 + G outputs, G = len(bin_split) + 2 groups (1209 for LVIS v1).  This is the
authors' EQLv2-repo layout, not the one of the first BAGS release.

Training: in group g a label of g maps to its 1-based position in g, anything else (other classes,
background) to 0 ("others").  In each class group all RoIs of its classes are kept plus
``int(fg_num * beta)`` "others" RoIs drawn without replacement (all of them when there are fewer); a group
with no RoI of its classes contributes 0.  The background group uses every RoI.  Each group's cross
entropy is averaged over its kept RoIs, and the groups are summed.

The cross entropies of all groups come from one autograd function with a closed-form backward
(``softmax - one-hot``), computed only on the RoIs each group keeps, so forward and backward cost about
as much as one softmax cross-entropy over C + 1 logits; the values are the same up to float rounding.

Inference: softmax within each group; the class probabilities (without "others") go to their label's
column and are multiplied by the background group's p(others) = P(foreground); the last column is the
background group's p(background).  No further calibration.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmdet.models.losses import accuracy
from mmdet.registry import MODELS
from mmengine.logging import print_log
from torch import Tensor, nn

from .eql import _category_field, load_ann_categories

__all__ = ["GroupSoftmax", "group_layout"]


def group_layout(instance_counts: Sequence[float], bin_split: Sequence[float]) -> dict[str, Tensor]:
    """Index tables of the BAGS logit layout.

    Args:
        instance_counts (Sequence[float]): Training instances of each class, in label order (length C).
        bin_split (Sequence[float]): Ascending group boundaries.

    Returns:
        dict[str, Tensor]: Long tensors
        ``group_of_label`` (C + 1,): group of each label, background -> the last group G - 1;
        ``local_label`` (C + 1,): 1-based position of each label inside its own group;
        ``group_start`` (G,), ``group_size`` (G,): first channel and number of channels (others included)
        of each group;
        ``label_channel`` (C + 1,): the channel that holds each label's logit.
    """
    num_classes = len(instance_counts)
    num_groups = len(bin_split) + 2
    group_of_label = [bisect.bisect_right(list(bin_split), c) for c in instance_counts] + [num_groups - 1]
    members: list[list[int]] = [[] for _ in range(num_groups)]
    for label, g in enumerate(group_of_label):
        members[g].append(label)  # ascending label order
    local_label = [0] * (num_classes + 1)
    label_channel = [0] * (num_classes + 1)
    group_start, group_size = [], []
    start = 0
    for g in range(num_groups):
        group_start.append(start)
        group_size.append(len(members[g]) + 1)
        for pos, label in enumerate(members[g], start=1):
            local_label[label] = pos
            label_channel[label] = start + pos
        start += len(members[g]) + 1
    assert start == num_classes + 1 + num_groups
    return {
        "group_of_label": torch.tensor(group_of_label),
        "local_label": torch.tensor(local_label),
        "group_start": torch.tensor(group_start),
        "group_size": torch.tensor(group_size),
        "label_channel": torch.tensor(label_channel),
    }


class _GroupCrossEntropy(torch.autograd.Function):
    """Each group's cross entropy times the sampling mask, shape (G, N), with a closed-form backward.

    The groups are consecutive channel blocks of ``sizes`` channels.  A RoI a group does not keep (mask 0)
    adds nothing to its loss nor to its gradient, so only the kept rows of each group's block are
    computed, and a group that keeps none (most rare-class groups in most batches) costs nothing.  The
    backward is ``(softmax_g - one-hot) * mask * dL/dloss`` on those rows; the rows of a block are gathered
    into a contiguous tensor first, and the gradient is assembled once (element-wise ops on column slices
    of the (N, C + 1 + G) logits run several times slower on the CPU than on contiguous blocks).  Autograd
    over one ``cross_entropy`` per slice would instead send each group's gradient back as a zero-filled
    (N, C + 1 + G) tensor, G of them summed.  Double backward is not supported (the head never needs it).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        logits: Tensor,
        targets: Tensor,
        mask: Tensor,
        sizes: tuple[int, ...],
    ) -> Tensor:
        losses = logits.new_zeros(len(sizes), logits.size(0))
        saved = []
        for g, block in enumerate(logits.split(sizes, dim=1)):
            rows = torch.nonzero(mask[g]).squeeze(1)
            log_probs = F.log_softmax(block.index_select(0, rows), dim=1)
            target = targets[g, rows]
            losses[g, rows] = -log_probs.gather(1, target[:, None]).squeeze(1) * mask[g, rows]
            saved += [rows, target, log_probs]
        ctx.sizes = sizes
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(mask, *saved)
        return losses

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_losses: Tensor) -> tuple[Tensor | None, ...]:
        mask, *saved = ctx.saved_tensors
        coef = grad_losses * mask
        grad = coef.new_zeros(mask.size(1), sum(ctx.sizes))
        for g, block in enumerate(grad.split(ctx.sizes, dim=1)):
            rows, target, log_probs = saved[3 * g : 3 * g + 3]
            row_coef = coef[g, rows, None]
            kept = log_probs.exp().mul_(row_coef).scatter_add_(1, target[:, None], -row_coef)
            block.index_copy_(0, rows, kept)
        return grad, None, None, None


@MODELS.register_module()
class GroupSoftmax(nn.Module):
    """Balanced Group Softmax, `arXiv:2006.10408 <https://arxiv.org/abs/2006.10408>`_.

    See the module docstring for the layout, the sampling and the inference merge.  In the original it is
    trained as a decoupled classifier (fc_cls re-initialised, everything else frozen), which is the
    config's business, not the loss's.  ``fc_cls`` keeps mmdet's softmax init (N(0, 0.01), bias 0).

    The "others" sampling draws from torch's global generator (seeded by mmengine's ``randomness``),
    on the device of the labels.

    Args:
        num_classes (int): Number of foreground classes C; must match the categories in ``ann_file``.
        ann_file (str): LVIS-format *training* annotation JSON whose categories carry ``instance_count``.
            Give the full path.
        bin_split (Sequence[float], optional): Instance-count group boundaries. Defaults to (10, 100, 1000).
        beta (float, optional): "others" RoIs kept per foreground RoI of the group. Defaults to 8.
        loss_weight (float, optional): Weight of the loss. Defaults to 1.0.
    """

    def __init__(
        self,
        num_classes: int,
        ann_file: str,
        bin_split: Sequence[float] = (10, 100, 1000),
        beta: float = 8,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        assert list(bin_split) == sorted(bin_split), f"bin_split must be ascending, got {bin_split}"
        self.num_classes = num_classes
        self.ann_file = ann_file
        self.bin_split = tuple(bin_split)
        self.beta = beta
        self.loss_weight = loss_weight
        self.use_sigmoid = False
        self.num_groups = len(self.bin_split) + 2

        categories, _ = load_ann_categories(ann_file, num_classes)
        counts = _category_field(ann_file, categories, "instance_count")
        # Constants derived from ann_file: they follow .to(device) but stay out of checkpoints.
        for name, table in group_layout(counts, self.bin_split).items():
            self.register_buffer(name, table, persistent=False)
        self._group_sizes = tuple(self.group_size.tolist())  # on the host: splitting needs no device sync

        self.custom_cls_channels = True
        self.custom_activation = True
        self.custom_accuracy = True

        print_log(
            f"build GroupSoftmax: {self.num_groups} groups of sizes {self.group_size.tolist()} "
            f"(others included), beta={beta}",
            logger="current",
            level=logging.INFO,
        )

    @property
    def num_channels(self) -> int:
        return self.num_classes + 1 + self.num_groups

    def group_slice(self, g: int) -> slice:
        start = int(self.group_start[g])
        return slice(start, start + int(self.group_size[g]))

    def group_labels(self, labels: Tensor) -> Tensor:
        """Remapped targets, shape (G, N): in group g, the label's position in g, or 0 ("others")."""
        labels = labels.long()
        own = self.group_of_label[labels]  # (N,)
        groups = torch.arange(self.num_groups, device=labels.device)[:, None]
        return torch.where(own[None, :] == groups, self.local_label[labels][None, :], 0)

    def sample_mask(self, labels: Tensor) -> Tensor:
        """Which RoIs each group's loss uses, shape (G, N), float 0/1 (see the module docstring)."""
        remapped = self.group_labels(labels)
        mask = torch.zeros_like(remapped, dtype=torch.float)
        mask[-1] = 1  # background group: every RoI
        for g in range(self.num_groups - 1):
            in_group = remapped[g] > 0
            fg_num = int(in_group.sum())
            if fg_num == 0:
                continue
            mask[g, in_group] = 1
            others = torch.nonzero(~in_group, as_tuple=False).squeeze(1)
            num_sample = int(fg_num * self.beta)
            if num_sample < others.numel():
                others = others[torch.randperm(others.numel(), device=others.device)[:num_sample]]
            mask[g, others] = 1
        return mask

    def forward(
        self,
        cls_score: Tensor,
        labels: Tensor,
        label_weights: Tensor | None = None,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
    ) -> Tensor:
        """Sum over the groups of each group's cross entropy averaged over its kept RoIs.

        ``label_weights`` and ``avg_factor`` are accepted for the head's signature and not used, like the
        original.  ``reduction_override``: None/``'mean'`` (the original), ``'sum'`` (groups' sums, no
        per-group averaging) or ``'none'`` (the masked per-RoI losses, shape (G, N)).
        """
        assert reduction_override in (None, "none", "mean", "sum")
        reduction = reduction_override or "mean"
        if avg_factor is not None and reduction == "sum":
            raise ValueError('avg_factor can not be used with reduction="sum"')
        assert cls_score.dim() == 2 and cls_score.size(-1) == self.num_channels, (
            f"GroupSoftmax expects (N, {self.num_channels}) logits, got {tuple(cls_score.shape)}"
        )
        remapped = self.group_labels(labels)
        # Float32 whatever autocast made of the logits (mixed precision): a bfloat16 mask would count the
        # kept RoIs of a group (the normaliser) only up to 256 exactly.
        logits = cls_score.float()
        mask = self.sample_mask(labels)
        losses = _GroupCrossEntropy.apply(logits, remapped, mask, self._group_sizes)
        if reduction == "none":
            return self.loss_weight * losses
        if reduction == "sum":
            return self.loss_weight * losses.sum()
        return self.loss_weight * (losses.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).sum()

    def get_cls_channels(self, num_classes: int) -> int:
        """C class logits, the background logit and one "others" logit per group."""
        assert num_classes == self.num_classes, (
            f"GroupSoftmax(num_classes={self.num_classes}) is used in a head with num_classes={num_classes}"
        )
        return self.num_channels

    def get_activation(self, cls_score: Tensor) -> Tensor:
        """Merged probabilities, shape (N, C + 1), background last (see the module docstring)."""
        probs = torch.cat(
            [F.softmax(cls_score[:, self.group_slice(g)], dim=1) for g in range(self.num_groups)], dim=1
        )
        # label_channel maps every label (background included) to its channel; the background group's
        # "others" channel, P(foreground), is the one just before the background channel.
        merged = probs[:, self.label_channel]
        p_fg = probs[:, int(self.label_channel[-1]) - 1 : int(self.label_channel[-1])]
        return torch.cat([merged[:, :-1] * p_fg, merged[:, -1:]], dim=1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> dict[str, Tensor]:
        """Logged accuracies (percent).

        * ``acc``: top-1 of the merged (N, C + 1) probabilities against the labels, over all RoIs: the same
          quantity as mmdet's ``acc`` for the softmax baseline, so the two can be compared.
        * ``acc_objectness``: the background group alone (background iff p(bg) > p(others)), over all RoIs.
        """
        merged = self.get_activation(cls_score)
        bg_slice = self.group_slice(self.num_groups - 1)
        bg_target = self.group_labels(labels)[-1]
        return {
            "acc": accuracy(merged, labels.long()),
            "acc_objectness": accuracy(cls_score[:, bg_slice], bg_target),
        }
