# BAGS on LVIS v0.5: GroupSoftmax (bins 10/100/1000 on v0.5's instance counts: groups of 294, 453, 302
# and 181 classes), fc_cls re-trained from the v0.5 baseline, the 1x schedule as the v1 twin.
_base_ = ['../lvis_v1/mask-rcnn_r50_fpn_bags_ms-1x_lvis-v1.py', '../_base_/lvis_v0.5.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            num_classes=1230,
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(num_classes=1230,
                          ann_file='resources/lvis_v0_5/annotations/lvis_v0.5_train.json')),
        mask_head=dict(num_classes=1230)))
train_dataloader = dict(dataset={{_base_.lvis_v05_train}})
test_dataloader = dict(dataset={{_base_.lvis_v05_val}})
test_evaluator = {{_base_.lvis_v05_val_evaluator}}
