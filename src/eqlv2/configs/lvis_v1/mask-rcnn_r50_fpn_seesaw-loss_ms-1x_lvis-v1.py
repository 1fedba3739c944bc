# Seesaw Loss (Wang et al., CVPR 2021), beyond the paper's table, as mmdet 3.3 ships it for LVIS v1
# (mmdet::seesaw_loss/mask-rcnn_r50_fpn_seesaw-loss_random-ms-2x_lvis-v1.py): mmdet's own SeesawLoss with its
# defaults p = 0.8 (mitigation), q = 2.0 (compensation) on C + 2 softmax outputs (C classes, then an
# objectness pair), and a cosine classifier, NormedLinear at temperature 20; no RFS.  Our baseline's 1x
# schedule, not mmdet's 2x, so that the row compares with the others.
# Of mmdet's differences from its own LVIS Mask R-CNN only the box classifier's are taken: its head is the
# same Shared2FCBBoxHead as our baseline's, and its test_cfg (score_thr 1e-4, 300 per image) is already ours.
# mmdet's "-normed-mask" variants in addition make the mask head's predictor a NormedConv2d (temperature 20)
# for +0.4 mask AP at 2x; that changes the mask branch, not the classification loss this table compares, so
# the mask head stays the baseline's, as in every other row (mmdet's main Seesaw rows keep it too).
_base_ = './mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            cls_predictor_cfg=dict(type='NormedLinear', tempearture=20),  # sic: mmdet's argument name
            loss_cls=dict(_delete_=True, type='SeesawLoss', p=0.8, q=2.0, num_classes=1203,
                          loss_weight=1.0))))
