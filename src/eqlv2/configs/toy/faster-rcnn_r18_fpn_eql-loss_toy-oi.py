# EQL on the toy's OpenImages twin, counted as the original counted OpenImages (`version="openimage"`):
# per-class training *instances*, tail = fewer than lambda.  The original's lambda = 1652 makes the rarer
# half of the 500 classes tail; on the twin's training split (1000 images, counts 0..400) the rarer half
# of the 52 classes is the ones with fewer than 16 boxes.
_base_ = ['./faster-rcnn_r18_fpn_ce_toy-oi.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(_delete_=True, type='EQL', num_classes=52, lambda_=16, frequency='instance',
                          ann_file='resources/toy/openimages/annotations/train.json'))))
