# LWS (configs/decouple/lws_r50_8x2_1x.py): the baseline's classifier kept (surgery "reset"); only one
# scale per class (and background) learns; class-aware sampling and cRT's 75k-iteration schedule.
_base_ = './mask-rcnn_r50_fpn_crt_ms-1x_lvis-v1.py'

model = dict(
    trainable=['roi_head.bbox_head.fc_cls.scales'],
    roi_head=dict(bbox_head=dict(type='LWSBBoxHead')))
