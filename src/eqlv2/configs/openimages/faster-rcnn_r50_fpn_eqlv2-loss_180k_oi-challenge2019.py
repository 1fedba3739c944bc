# EQLv2 (configs/openimages/eqlv2_r50_fpn_8x2_2x.py): gamma=12, mu=0.8, alpha=4, statistics summed over
# GPUs.  num_classes=500 is set here; the original left it at LVIS's 1203 and cannot run (README, "Bugs of
# the original, fixed here").
_base_ = ['./faster-rcnn_r50_fpn_ce_180k_oi-challenge2019.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            loss_cls=dict(_delete_=True, type='EQLv2', num_classes=500))))
