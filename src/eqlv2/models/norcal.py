"""NorCal post-hoc calibration of a softmax box head (Pan et al., NeurIPS 2021, "On Model Calibration for
Long-Tailed Object Detection and Instance Segmentation"; reference code tydpan/NorCal, detectron2).

Each foreground class score is divided by the class's training sample size raised to γ, the background
score is left alone, and the scores are renormalised over all classes of the proposal:

    p_c = (exp(z_c) / n_c^γ) / (exp(z_bg) + Σ_k exp(z_k) / n_k^γ),   p_bg likewise with exp(z_bg) on top.

That is exactly ``softmax`` of the logits with ``γ · log n_c`` subtracted from the foreground columns, so
``NorCalBBoxHead`` shifts the logits and hands them to mmdet's own ``_predict_by_feat_single``: the
calibrated scores then go through its ``score_thr``, NMS and ``max_per_img`` unchanged.  Calibration has to
happen there, before those steps, because it reorders detections within a class and changes which survive
the threshold and the per-image cut; it cannot be applied to saved result files.

Facts taken from the reference code (``CalibrationFastRCNNOutputLayers``), and what this module does:

* **Which count**: the per-category ``image_count`` of the LVIS *training* annotations (their
  ``_get_frequencies(cfg, by="image")``), the raw number of training images holding the class, not a
  fraction: because the background is not rescaled, a constant factor on every n_c is not cancelled by the
  renormalisation, so the raw count is what the published γ values refer to.  ``count='instance'`` (raw
  ``instance_count``) is offered for the paper's ablation; image count is the default.  The counts are read
  through the same helpers as EQL's frequencies (``load_ann_categories``), from the training ``ann_file``.
* **Renormalisation**: on by default (their ``TEST.CALIBRATION.RENORM = True``, the paper's point that
  normalising over classes per proposal is key).  Off would leave unnormalised ``exp(z_c)/n_c^γ`` that
  mmdet's softmax path cannot carry, so ``renormalize=False`` is refused in one line rather than faked.
* **γ**: their default is 0.0, which changes nothing; γ is chosen per model by a declared rule (a grid over
  held-out training images), not fixed here.

Sigmoid-classifier heads (EQL, EQLv2) have no softmax over classes with a background column; NorCal as
published does not apply to them and this head refuses them.
"""

from __future__ import annotations

from os import PathLike

import torch
from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead
from mmdet.registry import MODELS
from torch import Tensor

from .losses.eql import _category_field, load_ann_categories

__all__ = ["NorCalBBoxHead", "load_norcal_counts", "norcal_logits", "norcal_scores"]

_COUNT_FIELDS = {"image": "image_count", "instance": "instance_count"}


def load_norcal_counts(ann_file: str | PathLike, num_classes: int, count: str = "image") -> Tensor:
    """Raw per-class training counts n_c, shape (C,), in label order (``image_count`` or ``instance_count``).

    Raises:
        ValueError: Unknown ``count``, a wrong number of categories, a missing field, or a zero count
            (n_c^γ would divide by zero for γ > 0).
    """
    if count not in _COUNT_FIELDS:
        raise ValueError(f"NorCal count must be one of {sorted(_COUNT_FIELDS)}, got {count!r}")
    categories, _ = load_ann_categories(ann_file, num_classes)
    counts = torch.tensor(_category_field(ann_file, categories, _COUNT_FIELDS[count]), dtype=torch.float64)
    if bool((counts <= 0).any()):
        field = _COUNT_FIELDS[count]
        raise ValueError(f"{ann_file}: {field} must be positive for NorCal, found {counts.min().item():g}")
    return counts


def norcal_logits(cls_score: Tensor, counts: Tensor, gamma: float) -> Tensor:
    """Logits (N, C+1) whose softmax is NorCal's renormalised score: z_c - γ log n_c, background kept."""
    shift = torch.zeros(cls_score.size(-1), dtype=cls_score.dtype, device=cls_score.device)
    shift[:-1] = gamma * torch.log(counts.to(device=cls_score.device, dtype=cls_score.dtype))
    return cls_score - shift


def norcal_scores(cls_score: Tensor, counts: Tensor, gamma: float) -> Tensor:
    """NorCal's calibrated class scores (N, C+1), background last, each row summing to 1."""
    return torch.softmax(norcal_logits(cls_score, counts, gamma), dim=-1)


@MODELS.register_module()
class NorCalBBoxHead(Shared2FCBBoxHead):
    """``Shared2FCBBoxHead`` that applies NorCal to the class logits at prediction time only.

    Training is untouched (same parameters, same loss), so a baseline/RFS/cRT checkpoint loads unchanged.

    Args:
        norcal (dict): ``ann_file`` (training LVIS JSON, full path), ``gamma`` (float ≥ 0),
            ``count`` (``'image'`` default, or ``'instance'``), ``renormalize`` (must be True).
    """

    def __init__(self, *args, norcal: dict, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.custom_cls_channels:
            raise ValueError(
                "NorCalBBoxHead: NorCal needs a plain softmax classifier (C+1 logits, background last); "
                f"loss_cls {type(self.loss_cls).__name__} has its own activation (sigmoid EQL/EQLv2, Seesaw)"
            )
        unknown = set(norcal) - {"ann_file", "gamma", "count", "renormalize"}
        if unknown:
            raise ValueError(f"NorCalBBoxHead norcal: unknown keys {sorted(unknown)}")
        if not norcal.get("renormalize", True):
            raise ValueError("NorCalBBoxHead norcal.renormalize=False: unnormalised scores are not supported")
        self.gamma = float(norcal.get("gamma", 0.0))
        if self.gamma < 0:
            raise ValueError(f"NorCalBBoxHead norcal.gamma must be >= 0, got {self.gamma}")
        counts = load_norcal_counts(norcal["ann_file"], self.num_classes, norcal.get("count", "image"))
        self.register_buffer("norcal_counts", counts.float(), persistent=False)

    def _predict_by_feat_single(self, roi: Tensor, cls_score: Tensor, *args, **kwargs):
        if cls_score is not None:
            cls_score = norcal_logits(cls_score, self.norcal_counts, self.gamma)
        return super()._predict_by_feat_single(roi, cls_score, *args, **kwargs)
