# Baseline of the embedded default: Mask R-CNN with softmax cross-entropy, sized for a CPU.
# A ResNet-18 at half width, trained from scratch on 128 px images of the generated long-tailed dataset
# (48 classes; `eqlv2 make-toy`).  Everything else is mmdet's Mask R-CNN FPN.  The schedule is
# iteration based so that its length does not depend on the dataset size.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/lvis_v1_instance.py',
    'mmdet::_base_/default_runtime.py',
]
custom_imports = dict(imports=['eqlv2.plugin'], allow_failed_imports=False)

num_classes = 48  # eqlv2.datasets.toy.CATEGORY_NAMES
image_size = 128
data_root = 'resources/toy/'  # `eqlv2 train --data-root` replaces it

model = dict(
    backbone=dict(
        depth=18,
        base_channels=32,  # half the width of a ResNet-18: 32-64-128-256 channels
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),  # no pretrained weights: the toy images are not natural images
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=64),
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        anchor_generator=dict(scales=[4])),  # objects are 14-44 px
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=64),
        # mmdet's FCNMaskHead at a quarter of its conv cost (32 channels), predicting at test time only each
        # detection's own class (eqlv2.models.LabelMaskHead): at 300 detections per image the mask head was
        # half of a CPU inference.
        mask_head=dict(
            type='LabelMaskHead',
            num_convs=2,
            in_channels=64,
            conv_out_channels=32,
            num_classes=num_classes)),
    # At most 6 objects in a 128 px image: fewer proposals and sampled RoIs than for COCO-sized images.
    # (Measured on 2 cores: RoIAlign and the RPN's NMS took 57% of an iteration at 1000/500 and 128.)
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(score_thr=0.0001, max_per_img=300)))  # LVIS: up to 300 detections per image

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataset = dict(
    type='LVISV1Dataset',
    data_root=data_root,
    ann_file='annotations/lvis_v1_train.json',
    data_prefix=dict(img=''),
    filter_cfg=dict(filter_empty_gt=True, min_size=4),
    pipeline=train_pipeline)
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(_delete_=True, **train_dataset))  # no RFS wrapper: images are sampled uniformly
# The global batch: 4 images per optimizer step.  `eqlv2 train` gives each of N processes 4 / N of them
# (batch_size above is the one-process share), so a 2-process run trains the same schedule.
auto_scale_lr = dict(enable=False, base_batch_size=4)
test_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_evaluator = dict(ann_file=data_root + 'annotations/lvis_v1_val.json')
# No validation during training: evaluation is its own stage of the workflow.
val_dataloader = None
val_evaluator = None
val_cfg = None

# 500 iterations of 4 images (2 epochs): the demo's time budget; the rare-class story was checked at this
# length (README, Results).  `eqlv2 train --max-iters` rescales the whole schedule.
max_iters = 500
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)
test_cfg = dict(type='TestLoop')

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=100),
    dict(
        type='MultiStepLR',
        by_epoch=False,
        begin=0,
        end=max_iters,
        milestones=[int(max_iters * 0.75), int(max_iters * 0.9)],
        gamma=0.1),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=200, max_keep_ckpts=2),
    visualization=dict(type='DetVisualizationHook', draw=False))
log_processor = dict(by_epoch=False, window_size=20)
# Stop on a NaN/inf loss instead of training on; save EQLv2's per-rank gradient statistics at the end, and
# every method's per-class positive/negative classifier gradients (work_dir/classifier_gradients.pt).
custom_hooks = [dict(type='NonFiniteLossHook'), dict(type='GradientStatsHook'),
                dict(type='ClassifierGradientHook')]
env_cfg = dict(dist_cfg=dict(backend='gloo'))
