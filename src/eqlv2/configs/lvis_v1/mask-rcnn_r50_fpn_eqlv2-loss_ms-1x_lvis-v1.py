# EQLv2 (configs/end2end/eqlv2_r50_8x2_1x.py): gamma=12, mu=0.8, alpha=4, statistics summed over GPUs; no RFS.
_base_ = ['./mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            loss_cls=dict(_delete_=True, type='EQLv2', num_classes=1203))))
