# Seesaw Loss (Wang et al., CVPR 2021), beyond the paper's table: mmdet's SeesawLoss with its defaults
# p = 0.8, q = 2.0 and a cosine classifier (NormedLinear, temperature 20), as mmdet's LVIS configs use it
# (see lvis_v1/mask-rcnn_r50_fpn_seesaw-loss_ms-1x_lvis-v1.py for what of mmdet's config is taken and why).
# SeesawLoss has its own num_classes, which must equal the head's: taken from the base, not written again.
_base_ = './mask-rcnn_r18_fpn_ce_toy.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),  # sic: mmdet's argument name
            loss_cls=dict(_delete_=True, type='SeesawLoss', p=0.8, q=2.0,
                          num_classes={{_base_.num_classes}}, loss_weight=1.0))))
