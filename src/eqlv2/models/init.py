"""Weight init of a ``ConvFCBBoxHead`` (e.g. ``Shared2FCBBoxHead``) for the sigmoid losses EQL and EQLv2.

The original (``convfc_bbox_head.init_weights`` when ``use_sigmoid``) drew fc_cls weights from N(0, 0.01^2)
and set every fc_cls bias, EQLv2's background logit included, to ``bias_init_with_prob(0.001)`` =
-log(0.999 / 0.001) = -6.9068, so that every class starts with p = 0.001 instead of 0.5 (otherwise the
first iterations are dominated by the negative terms of 1203 classes).

mmdet 3 does this through the head's ``init_cfg``.  mmengine's ``Normal`` initializer turns ``bias_prob``
into ``bias_init_with_prob(bias_prob)``; an ``override`` entry holding only ``name`` inherits the outer
entry's arguments (an override with extra arguments must also name its ``type``).  Passing an ``init_cfg``
replaces the head's default list, so the fc_reg and shared-fc entries of the default are repeated here.

The package's configs inherit it from one fragment, ``configs/_base_/sigmoid_prior_init.py``, listed
next to their parent::

    _base_ = ['./mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py', '../_base_/sigmoid_prior_init.py']
    model = dict(roi_head=dict(bbox_head=dict(
        init_cfg={{_base_.sigmoid_prior_init_cfg}},
        loss_cls=dict(type='EQLv2', num_classes=1203))))

``SIGMOID_PRIOR_INIT_CFG`` below is the same list, for code that builds heads directly (tests check that
the two agree).

Use the default init (no ``init_cfg``) for the softmax losses, GroupSoftmax included.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SIGMOID_PRIOR_INIT_CFG", "sigmoid_prior_init_cfg"]


def sigmoid_prior_init_cfg(prior_prob: float = 0.001) -> list[dict[str, Any]]:
    """A fresh ``init_cfg`` list for a ``ConvFCBBoxHead`` whose fc_cls bias starts at ``prior_prob``.

    Args:
        prior_prob (float, optional): Initial sigmoid probability of every class. Defaults to 0.001.
    """
    return [
        dict(type="Normal", std=0.01, bias_prob=float(prior_prob), override=dict(name="fc_cls")),
        dict(type="Normal", std=0.001, override=dict(name="fc_reg")),
        dict(
            type="Xavier",
            distribution="uniform",
            override=[dict(name="shared_fcs"), dict(name="cls_fcs"), dict(name="reg_fcs")],
        ),
    ]


#: The original's init (prior 0.001).  A shared object: call sigmoid_prior_init_cfg() for a copy to mutate.
SIGMOID_PRIOR_INIT_CFG: list[dict[str, Any]] = sigmoid_prior_init_cfg()
