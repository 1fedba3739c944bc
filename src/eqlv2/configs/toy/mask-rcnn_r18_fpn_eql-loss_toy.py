# EQL (Tan et al., CVPR 2020): sigmoid classifier with C outputs; for foreground RoIs the negative
# gradients of tail classes are dropped.  On LVIS v1 the original used lambda = 0.0011, about 109 of
# 99,388 training images: every rare and common class is "tail", plus 17 frequent ones.  The toy has
# about 960 annotated training images, so the same cut (all r and c classes and the least frequent f
# classes) is lambda = 0.11, about 106 images.
_base_ = ['./mask-rcnn_r18_fpn_ce_toy.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(_delete_=True, type='EQL', num_classes=48, lambda_=0.11,
                          ann_file='resources/toy/annotations/lvis_v1_train.json'))))
