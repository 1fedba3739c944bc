# Effective Class-Margin loss (Cho and Krähenbühl, ECCV 2022): C + 1 sigmoid outputs, per-class margins and
# weights from the training image counts.  fg_bg_ratio is the authors' figure for Mask R-CNN on LVIS v1,
# not measured on the toy.  No RFS, no cosine classifier, plain mask head: only the loss differs from the
# baseline, as for EQLv2's row.
_base_ = ['./mask-rcnn_r18_fpn_ce_toy.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(_delete_=True, type='ECMLoss', num_classes=48,
                          ann_file='resources/toy/annotations/lvis_v1_train.json', fg_bg_ratio=6.3313))))
