# EQL on LVIS v0.5: lambda = 0.00177, the original's default for v0.5 (its `version="v0_5"`), which makes
# the 915 rare and common classes of the 1230 "tail" (image-count frequency over v0.5's 56,740
# annotated training images); no RFS.
_base_ = ['../lvis_v1/mask-rcnn_r50_fpn_eql-loss_ms-1x_lvis-v1.py', '../_base_/lvis_v0.5.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            num_classes=1230,
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(num_classes=1230, lambda_=0.00177,
                          ann_file='resources/lvis_v0_5/annotations/lvis_v0.5_train.json')),
        mask_head=dict(num_classes=1230)))
train_dataloader = dict(dataset={{_base_.lvis_v05_train}})
test_dataloader = dict(dataset={{_base_.lvis_v05_val}})
test_evaluator = {{_base_.lvis_v05_val_evaluator}}
