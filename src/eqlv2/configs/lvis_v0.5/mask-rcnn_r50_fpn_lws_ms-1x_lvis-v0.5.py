# LWS on LVIS v0.5: the v0.5 baseline's classifier kept (surgery "reset"), one scale per class learns;
# class-aware sampling and cRT's 75k-iteration schedule, as the v1 twin.
_base_ = ['../lvis_v1/mask-rcnn_r50_fpn_lws_ms-1x_lvis-v1.py', '../_base_/lvis_v0.5.py']

model = dict(roi_head={{_base_.lvis_v05_heads}})
train_dataloader = dict(dataset={{_base_.lvis_v05_train}})
test_dataloader = dict(dataset={{_base_.lvis_v05_val}})
test_evaluator = {{_base_.lvis_v05_val_evaluator}}
