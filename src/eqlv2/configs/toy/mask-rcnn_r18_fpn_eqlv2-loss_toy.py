# EQLv2 (Tan et al., CVPR 2021): C+1 sigmoid outputs, per-class weights driven by the accumulated ratio
# of positive to negative gradients (gamma=12, mu=0.8, alpha=4), summed over all processes.
_base_ = ['./mask-rcnn_r18_fpn_ce_toy.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            loss_cls=dict(_delete_=True, type='EQLv2', num_classes=48))))
