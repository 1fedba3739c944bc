"""A Mask R-CNN mask head whose inference costs what LVIS's 300 detections per image need, not 300 x C maps.

mmdet's ``FCNMaskHead`` computes, for every detection, the 28 x 28 mask logits of *all* C classes, takes the
sigmoid of all of them, keeps the detection's own class, and on a CPU pastes the masks into the image one
at a time.  At the LVIS protocol's 300 detections per image that is most of a CPU inference: the (N, C, 28,
28) logits and their sigmoid are memory traffic for maps that are thrown away, and the per-mask pasting is
thousands of tiny operators per image.

``LabelMaskHead`` trains exactly as ``FCNMaskHead`` (same parameters, same loss, same checkpoints) and
predicts the same masks: at inference ``forward`` stops before the last 1x1 convolution, and
``predict_by_feat`` applies that convolution's row of each detection's label only, then pastes all of an
image's masks in one ``_do_paste_mask`` call (the path mmdet takes on a GPU).  Inference means eval mode
*and* no autograd (mmengine's test loop): a decoupled method's frozen mask head is in eval mode while its
loss is still computed, and gets the full logits.  The embedded default uses this head (128 px images,
where one call over the whole image is cheap); the real LVIS configs keep mmdet's.  A cascade's mask heads
(Cascade Mask R-CNN, HTC) cannot take this shortcut, since their roi head averages every stage's full
class maps, and this head refuses to predict there (``activate_map``).
"""

from __future__ import annotations

import numpy as np
import torch
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import FCNMaskHead, _do_paste_mask
from mmdet.registry import MODELS
from mmengine.config import ConfigDict
from torch import Tensor


@MODELS.register_module()
class LabelMaskHead(FCNMaskHead):
    """``FCNMaskHead`` that, at inference, computes only the mask of each detection's own class."""

    def _label_only(self) -> bool:
        """Inference: eval mode without autograd.  ``forward`` and ``predict_by_feat`` of one prediction run
        under the same mode, so they agree on what ``forward`` returned."""
        return not self.training and not torch.is_grad_enabled() and self.conv_logits is not None

    def forward(self, x: Tensor) -> Tensor:
        """The (N, C, 28, 28) logits; at inference the features the last 1x1 convolution reads."""
        if not self._label_only():
            return super().forward(x)
        for conv in self.convs:
            x = conv(x)
        if self.upsample is not None:
            x = self.upsample(x)
            if self.upsample_method == "deconv":
                x = self.relu(x)
        return x

    def _label_logits(self, features: Tensor, labels: Tensor) -> Tensor:
        """Each RoI's logits of its own class (class-agnostic heads: the one class): (N, 28, 28)."""
        rows = torch.zeros_like(labels) if self.class_agnostic else labels
        weight = self.conv_logits.weight[rows, :, 0, 0]  # (N, channels)
        logits = torch.einsum("nchw,nc->nhw", features, weight)
        return logits + self.conv_logits.bias[rows][:, None, None]

    def _predict_by_feat_single(
        self,
        mask_preds: Tensor,
        bboxes: Tensor,
        labels: Tensor,
        img_meta: dict,
        rcnn_test_cfg: ConfigDict,
        rescale: bool = False,
        activate_map: bool = False,
    ) -> Tensor:
        """Binary masks (N, H, W) of one image, equal to ``FCNMaskHead``'s."""
        if not self._label_only():  # forward gave the logits of every class
            return super()._predict_by_feat_single(
                mask_preds, bboxes, labels, img_meta, rcnn_test_cfg, rescale, activate_map
            )
        if activate_map:  # the caller averaged the sigmoid of what forward gave, which were features here
            raise NotImplementedError(
                "LabelMaskHead cannot be a stage of a cascade (Cascade Mask R-CNN and HTC average every "
                "stage's mask maps before predicting); use mmdet's FCNMaskHead there"
            )
        probs = self._label_logits(mask_preds, labels).sigmoid()[:, None]
        scale_factor = bboxes.new_tensor(img_meta["scale_factor"]).repeat((1, 2))
        img_h, img_w = img_meta["ori_shape"][:2]
        if rescale:
            bboxes /= scale_factor  # in place, as mmdet: the detections' boxes go to the original scale too
        else:
            img_h = int(np.round(img_h * scale_factor[0, 1].item()))
            img_w = int(np.round(img_w * scale_factor[0, 0].item()))
        pasted, _ = _do_paste_mask(probs, bboxes, img_h, img_w, skip_empty=False)
        threshold = rcnn_test_cfg.mask_thr_binary
        if threshold >= 0:
            return pasted >= threshold
        return (pasted * 255).to(dtype=torch.uint8)  # mmdet's soft masks, for visualisation
