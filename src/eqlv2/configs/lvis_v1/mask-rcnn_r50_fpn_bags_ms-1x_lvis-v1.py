# BAGS (configs/decouple/bags_r50_8x2_1x.py): GroupSoftmax (bins 10/100/1000 on instance counts, beta 8),
# only fc_cls re-trained from the baseline with fc_cls removed, uniform sampling, the 1x schedule.
_base_ = './mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py'

model = dict(
    type='DecoupledMaskRCNN',
    trainable=['roi_head.bbox_head.fc_cls'],
    roi_head=dict(
        bbox_head=dict(
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(_delete_=True, type='GroupSoftmax', num_classes=1203,
                          ann_file='resources/lvis_v1/annotations/lvis_v1_train.json'))))
