# The sigmoid prior of the original's sigmoid classifiers (EQL, EQLv2): fc_cls weights from N(0, 0.01^2)
# and every fc_cls bias, EQLv2's background logit included, at -log(0.999/0.001), so that each of the
# 1203 (500) classes starts at p = 0.001 instead of 0.5.  Giving a head an init_cfg replaces mmdet's
# default list, so its fc_reg and shared-fc entries are repeated here (eqlv2/models/init.py says why).
# A config inherits this file next to its parent and sets
#     bbox_head=dict(init_cfg={{_base_.sigmoid_prior_init_cfg}})
# mmengine does not allow the same top-level key in two bases, so this file cannot carry `model` itself.
sigmoid_prior_init_cfg = [
    dict(type='Normal', std=0.01, bias_prob=0.001, override=dict(name='fc_cls')),
    dict(type='Normal', std=0.001, override=dict(name='fc_reg')),
    dict(type='Xavier', distribution='uniform',
         override=[dict(name='shared_fcs'), dict(name='cls_fcs'), dict(name='reg_fcs')]),
]
