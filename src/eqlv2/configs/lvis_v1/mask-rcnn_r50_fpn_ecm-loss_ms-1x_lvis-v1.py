# Effective Class-Margin loss (Cho and Krähenbühl, ECCV 2022; janghyuncho/ECM-Loss configs/
# effective_class_margin_loss/r50_ecm_1x.py): C + 1 sigmoid outputs, margins and weights from the training
# image counts, fg_bg_ratio=6.3313 (the authors').  Under this project's protocol: no RFS, plain linear
# classifier and mask head, the baseline's schedule, so the diff from the baseline is the loss alone and
# the row compares with EQLv2's.  The authors' published 26.4 mask / 26.9 box AP add RFS, NormedLinear
# (T=20), a normed mask head, a 10k-iteration warm-up and grad-clip 5.
_base_ = ['./mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(_delete_=True, type='ECMLoss', num_classes=1203,
                          ann_file='resources/lvis_v1/annotations/lvis_v1_train.json', fg_bg_ratio=6.3313))))
