# LWS (Kang et al., ICLR 2020): keep the baseline's classifier (surgery "reset") and learn only one scale
# per class (and background) on its weight vector, with class-aware sampling; everything else frozen.
_base_ = './mask-rcnn_r18_fpn_crt_toy.py'

model = dict(
    trainable=['roi_head.bbox_head.fc_cls.scales'],
    roi_head=dict(bbox_head=dict(type='LWSBBoxHead')))
