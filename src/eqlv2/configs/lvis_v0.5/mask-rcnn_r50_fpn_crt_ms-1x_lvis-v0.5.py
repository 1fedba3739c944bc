# cRT on LVIS v0.5: fc_cls re-trained from the v0.5 baseline (surgery "remove"), class-aware sampling and
# the v1 twin's 75k-iteration schedule, kept in iterations (the original ships no v0.5 decoupled schedule).
_base_ = ['../lvis_v1/mask-rcnn_r50_fpn_crt_ms-1x_lvis-v1.py', '../_base_/lvis_v0.5.py']

model = dict(roi_head={{_base_.lvis_v05_heads}})
train_dataloader = dict(dataset={{_base_.lvis_v05_train}})
test_dataloader = dict(dataset={{_base_.lvis_v05_val}})
test_evaluator = {{_base_.lvis_v05_val_evaluator}}
