# The baseline on LVIS v0.5: its LVIS v1 twin (softmax CE, 1x: 12 epochs, steps at 8 and 11) on the
# 1230 classes of v0.5; the other lvis_v0.5/ configs change only what their v1 twins change.
# mmdet's own v0.5 configs train 2x with RFS; the paper rows here keep the original's 1x.
_base_ = ['../lvis_v1/mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py', '../_base_/lvis_v0.5.py']

model = dict(roi_head={{_base_.lvis_v05_heads}})
train_dataloader = dict(dataset={{_base_.lvis_v05_train}})
test_dataloader = dict(dataset={{_base_.lvis_v05_val}})
test_evaluator = {{_base_.lvis_v05_val_evaluator}}
