# Baseline of the original's OpenImages table (configs/openimages/faster_rcnn_r50_fpn_8x2_2x.py): Faster
# R-CNN R50-FPN with softmax cross-entropy on the OpenImages Challenge 2019 train split (500 classes,
# `eqlv2 convert-openimages`), single scale 1333x800 with flips, 8 GPUs x 2 images, 180k iterations
# (the original's "2x": one pass of its MaxIterationDataset), lr 0.02, 500 warm-up iterations, steps at
# 120k and 160k.  Testing: score threshold 1e-4, NMS 0.5, 300 detections per image, scored by the
# Challenge metric (`eqlv2 evaluate-openimages`) rather than in mmdet.
_base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['eqlv2.plugin'], allow_failed_imports=False)

num_classes = 500
data_root = 'resources/openimages/'  # `eqlv2 train --data-root` replaces it

model = dict(
    # torchvision's ImageNet ResNet-50, fetched by the workflow so that compute nodes need no internet
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint='resources/downloads/resnet50-0676ba61.pth')),
    roi_head=dict(bbox_head=dict(num_classes=num_classes)),
    train_cfg=dict(rcnn=dict(assigner=dict(match_low_quality=False))),
    test_cfg=dict(
        rcnn=dict(score_thr=0.0001, nms=dict(type='nms', iou_threshold=0.5), max_per_img=300)))

# Images are sampled uniformly (InfiniteSampler, shuffled), as the original's MaxIterationDataset did,
# and batched by aspect ratio (mmdet's default, the original's GroupSampler).  Group-of boxes are ordinary
# training boxes, as in the original (iscrowd is 0 in the converted JSON).
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
    dataset=dict(
        data_root=data_root,
        ann_file='annotations/train.json',
        data_prefix=dict(img='images/train/')))
# The global batch, 8 GPUs x 2 images as the original: `eqlv2 train` gives each of N processes 16 / N
# images, so fewer GPUs keep the original's batch, lr and schedule.
auto_scale_lr = dict(enable=False, base_batch_size=16)
test_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file='annotations/validation.json',
        data_prefix=dict(img='images/validation/')))
# `eqlv2 test` writes the detections (COCO-style JSON); the Challenge metric is its own stage.
test_evaluator = dict(ann_file=data_root + 'annotations/validation.json', metric='bbox')
# No validation during training (the original disabled it too).
val_dataloader = None
val_evaluator = None
val_cfg = None

max_iters = 180000
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[120000, 160000],
        gamma=0.1),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=10000, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
env_cfg = dict(dist_cfg=dict(backend='nccl'))
# Stop on a NaN/inf loss instead of training on; save EQLv2's per-rank gradient statistics at the end, and
# every method's per-class positive/negative classifier gradients (work_dir/classifier_gradients.pt).
custom_hooks = [dict(type='NonFiniteLossHook'), dict(type='GradientStatsHook'),
                dict(type='ClassifierGradientHook')]
