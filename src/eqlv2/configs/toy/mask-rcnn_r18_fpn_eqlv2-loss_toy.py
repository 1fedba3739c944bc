# EQLv2 (Tan et al., CVPR 2021): C+1 sigmoid outputs, per-class weights driven by the accumulated ratio
# of positive to negative gradients (gamma=12, mu=0.8, alpha=4), summed over all processes.
_base_ = './mask-rcnn_r18_fpn_ce_toy.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg=[  # the sigmoid prior: every fc_cls bias starts at -log(0.999/0.001)
                dict(type='Normal', std=0.01, bias_prob=0.001, override=dict(name='fc_cls')),
                dict(type='Normal', std=0.001, override=dict(name='fc_reg')),
                dict(type='Xavier', distribution='uniform',
                     override=[dict(name='shared_fcs'), dict(name='cls_fcs'), dict(name='reg_fcs')]),
            ],
            loss_cls=dict(_delete_=True, type='EQLv2', num_classes=48))))
