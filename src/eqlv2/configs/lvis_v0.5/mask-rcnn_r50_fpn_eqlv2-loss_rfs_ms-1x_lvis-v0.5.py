# EQLv2 with RFS (t = 0.001) on LVIS v0.5.
_base_ = ['../lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss_rfs_ms-1x_lvis-v1.py', '../_base_/lvis_v0.5.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(num_classes=1230, loss_cls=dict(num_classes=1230)),
        mask_head=dict(num_classes=1230)))
train_dataloader = dict(dataset=dict(dataset={{_base_.lvis_v05_train}}))  # inside ClassBalancedDataset
test_dataloader = dict(dataset={{_base_.lvis_v05_val}})
test_evaluator = {{_base_.lvis_v05_val_evaluator}}
