# EQL (configs/end2end/eql_r50_8x2_1x.py): lambda = 0.0011 on image-count frequency, which makes 815 of
# the 1203 classes "tail" (all rare and common ones and 17 frequent ones); no RFS.
_base_ = ['./mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(_delete_=True, type='EQL', num_classes=1203, lambda_=0.0011,
                          ann_file='resources/lvis_v1/annotations/lvis_v1_train.json'))))
