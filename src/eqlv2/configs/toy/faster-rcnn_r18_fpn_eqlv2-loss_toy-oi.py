# EQLv2 on the toy's OpenImages twin: num_classes set to the data's (the original's OpenImages config
# left it at LVIS's 1203 and cannot run; see the README, "Bugs of the original, fixed here").
_base_ = ['./faster-rcnn_r18_fpn_ce_toy-oi.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            loss_cls=dict(_delete_=True, type='EQLv2', num_classes=52))))
