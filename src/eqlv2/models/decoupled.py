"""Mask R-CNN for the decoupled second stage (cRT, LWS, BAGS): everything frozen except named parameters.

The original froze modules through ``train_cfg.freeze`` (``'all'``/``'feat'`` per neck and head) plus the
backbone's ``frozen_stages=4`` and ``norm_eval=True``.  Here one argument says what stays trainable:

* ``trainable=('roi_head.bbox_head.fc_cls',)``: cRT and BAGS (only the classifier; its weight and bias);
* ``trainable=('roi_head.bbox_head.fc_cls.scales',)``: LWS (with ``LWSBBoxHead``; only the scales).

A prefix matches a parameter whose name equals it or starts with it followed by ``.``, so
``...fc_cls`` does not match a ``...fc_cls2``.  Every other parameter gets ``requires_grad=False``.

Why at construction: mmengine's runner wraps the model in ``MMDistributedDataParallel`` right after
building it.  DDP registers gradient hooks and buckets for exactly the parameters that require grad at
that moment; a parameter frozen afterwards is still expected by the reducer, which then waits for a
gradient that never comes (an error about parameters that "did not receive grad", or a hang with
``find_unused_parameters=False``).  Freezing in ``__init__`` happens before the wrapper exists.
``init_weights`` (which the runner calls after wrapping) only writes parameter values, but it re-applies
the same flags anyway, so no initialiser or pretrained loader can turn a frozen parameter back on.

Modes: ``train(mode)`` puts every submodule that owns parameters, none of them trainable, into eval mode
with everything below it, as the original's ``norm_eval=True`` and ``frozen_stages=4`` did for the
backbone: BatchNorm running statistics stay those of the baseline (and dropout, if any, is off).
Modules without parameters of their own (activations, RoI extractors, the loss modules with their
statistics) follow their parent, so the losses under the trainable bbox head stay in training mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from mmdet.models.detectors import MaskRCNN
from mmdet.registry import MODELS
from mmengine.logging import print_log
from torch import nn


def matches(name: str, prefix: str) -> bool:
    """Whether the parameter ``name`` lies under ``prefix`` (whole dotted components only)."""
    return name == prefix or name.startswith(prefix + ".")


def freeze_all_but(model: nn.Module, trainable: Sequence[str]) -> list[str]:
    """Set ``requires_grad`` to whether a parameter matches a prefix; return the trainable names."""
    if isinstance(trainable, str) or not trainable:
        raise ValueError(
            f"trainable must be a non-empty sequence of parameter-name prefixes, got {trainable!r}"
        )
    names = [name for name, _ in model.named_parameters()]
    unmatched = [p for p in trainable if not any(matches(n, p) for n in names)]
    if unmatched:
        raise ValueError(f"trainable prefix(es) match no parameter of the model: {', '.join(unmatched)}")
    kept = []
    for name, param in model.named_parameters():
        param.requires_grad_(any(matches(name, p) for p in trainable))
        if param.requires_grad:
            kept.append(name)
    return kept


def set_frozen_modules_eval(module: nn.Module) -> None:
    """Put each parameter-owning submodule without a trainable parameter (and its subtree) in eval mode."""
    for child in module.children():
        params = list(child.parameters())
        if not params:
            continue  # parameterless: keeps the parent's mode
        if not any(p.requires_grad for p in params):
            child.eval()
        else:
            set_frozen_modules_eval(child)


@MODELS.register_module()
class DecoupledMaskRCNN(MaskRCNN):
    """``MaskRCNN`` with all parameters frozen except those under the ``trainable`` name prefixes.

    Args:
        trainable (Sequence[str]): parameter-name prefixes (as in ``model.named_parameters()``) that keep
            ``requires_grad=True``, e.g. ``('roi_head.bbox_head.fc_cls',)``.  A prefix that matches no
            parameter is a ``ValueError``.
        Other arguments: those of ``MaskRCNN``.
    """

    def __init__(self, *args, trainable: Sequence[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.trainable = tuple(trainable) if not isinstance(trainable, str) else trainable
        names = freeze_all_but(self, self.trainable)
        count = sum(p.numel() for p in self.parameters() if p.requires_grad)
        print_log(
            f"DecoupledMaskRCNN: {count} trainable parameter values in {len(names)} tensor(s): "
            + ", ".join(names),
            logger="current",
        )
        self.train(self.training)

    def init_weights(self) -> None:
        super().init_weights()
        freeze_all_but(self, self.trainable)

    def train(self, mode: bool = True) -> DecoupledMaskRCNN:
        super().train(mode)
        if mode:
            set_frozen_modules_eval(self)
        return self
