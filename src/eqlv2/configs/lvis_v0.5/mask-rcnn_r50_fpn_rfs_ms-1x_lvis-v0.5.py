# RFS on LVIS v0.5 (t = 0.001): the v1 twin's ClassBalancedDataset around the v0.5 training set.
_base_ = ['../lvis_v1/mask-rcnn_r50_fpn_rfs_ms-1x_lvis-v1.py', '../_base_/lvis_v0.5.py']

model = dict(roi_head={{_base_.lvis_v05_heads}})
train_dataloader = dict(dataset=dict(dataset={{_base_.lvis_v05_train}}))  # inside ClassBalancedDataset
test_dataloader = dict(dataset={{_base_.lvis_v05_val}})
test_evaluator = {{_base_.lvis_v05_val_evaluator}}
