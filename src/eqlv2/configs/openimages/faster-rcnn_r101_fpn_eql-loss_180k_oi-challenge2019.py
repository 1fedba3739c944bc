# The R101 row of the original's OpenImages table: the R50 config with a ResNet-101 (torchvision's
# ImageNet weights, fetched by the workflow).
_base_ = './faster-rcnn_r50_fpn_eql-loss_180k_oi-challenge2019.py'

model = dict(
    backbone=dict(
        depth=101,
        init_cfg=dict(type='Pretrained', checkpoint='resources/downloads/resnet101-63fe2227.pth')))
