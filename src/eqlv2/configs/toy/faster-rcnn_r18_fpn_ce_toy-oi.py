# Baseline of the OpenImages branch on the embedded default: the toy Mask R-CNN without its mask branch
# (a Faster R-CNN, as in the original's OpenImages configs) with softmax cross-entropy, trained on the
# toy's OpenImages twin (`eqlv2 make-toy` writes it, `eqlv2 convert-openimages` turns it into COCO-style
# JSON).  52 classes: the 48 toy classes and their 4 shape parents, which have no boxes of their own and
# are scored only through the hierarchy, as parent classes of the Challenge are.  Group-of boxes are
# trained on as ordinary boxes, as the original did.
_base_ = './mask-rcnn_r18_fpn_ce_toy.py'

num_classes = 52  # classes.csv of the twin: eqlv2.datasets.openimages_toy
data_root = 'resources/toy/openimages/'  # `eqlv2 train --data-root` replaces it

model = dict(
    type='FasterRCNN',
    roi_head=dict(
        bbox_head=dict(num_classes=num_classes),
        mask_roi_extractor=None,
        mask_head=None))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        data_root=data_root,
        ann_file='annotations/train.json',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
test_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CocoDataset',
        data_root=data_root,
        ann_file='annotations/validation.json',
        data_prefix=dict(img='images/validation/'),
        test_mode=True,
        pipeline=test_pipeline))
# `eqlv2 test` writes the detections (COCO-style JSON); the Challenge metric is its own stage.
test_evaluator = dict(
    _delete_=True, type='CocoMetric', ann_file=data_root + 'annotations/validation.json', metric='bbox')
