# EQL (configs/openimages/eql_r50_fpn_8x2_2x.py): sigmoid classifier; tail = fewer than lambda = 1652
# training instances (the rarer 250 of the 500 classes), counted on the converted training JSON's
# instance_count, as the original's `version="openimage"` table counted them.
_base_ = ['./faster-rcnn_r50_fpn_ce_180k_oi-challenge2019.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(_delete_=True, type='EQL', num_classes=500, lambda_=1652, frequency='instance',
                          ann_file='resources/openimages/annotations/train.json'))))
