# A method of one's own on the embedded default: the toy baseline (Mask R-CNN, half-width ResNet-18 FPN)
# with its softmax cross-entropy replaced by RoIFocalLoss from my_loss.py beside this file.  Only the diff
# from the baseline is written here; everything else (model, data, schedule) is inherited.
import sys

# custom_imports imports modules by name, so this file's folder goes on the module path first:
# `{{ fileDirname }}` is mmengine's placeholder for the absolute folder of this config, so my_loss is
# found whatever the working directory (the repository, a Snakemake --directory elsewhere, a job node).
if "{{ fileDirname }}" not in sys.path:
    sys.path.insert(0, "{{ fileDirname }}")

# The baseline, by its path relative to this file (mmengine's `package::` prefix knows only OpenMMLab's
# packages).  A copy of this folder elsewhere points this at src/eqlv2/configs/toy/ of its checkout.
_base_ = ["../../src/eqlv2/configs/toy/mask-rcnn_r18_fpn_ce_toy.py"]
custom_imports = dict(imports=["eqlv2.plugin", "my_loss"], allow_failed_imports=False)

model = dict(
    roi_head=dict(
        bbox_head=dict(
            # The focal-loss paper's prior: every fc_cls bias starts at -log((1 - 0.01) / 0.01), so each
            # sigmoid starts at p = 0.01 and the 48 + 1 channels' negatives do not swamp the first steps.
            # (An init_cfg replaces the head's default list, so fc_reg's and the shared fcs' are repeated.)
            init_cfg=[
                dict(type="Normal", std=0.01, bias_prob=0.01, override=dict(name="fc_cls")),
                dict(type="Normal", std=0.001, override=dict(name="fc_reg")),
                dict(
                    type="Xavier",
                    distribution="uniform",
                    override=[dict(name="shared_fcs"), dict(name="cls_fcs"), dict(name="reg_fcs")],
                ),
            ],
            loss_cls=dict(_delete_=True, type="RoIFocalLoss", num_classes=48, gamma=2.0, alpha=0.25),
        )
    )
)
