# EQLv2 on LVIS v0.5: gamma=12, mu=0.8, alpha=4 as on v1, gradient statistics for the 1230 classes.
_base_ = ['../lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss_ms-1x_lvis-v1.py', '../_base_/lvis_v0.5.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(num_classes=1230, loss_cls=dict(num_classes=1230)),
        mask_head=dict(num_classes=1230)))
train_dataloader = dict(dataset={{_base_.lvis_v05_train}})
test_dataloader = dict(dataset={{_base_.lvis_v05_val}})
test_evaluator = {{_base_.lvis_v05_val_evaluator}}
