# Baseline of the original (configs/end2end/mask_rcnn_r50_8x2_1x.py): Mask R-CNN R50-FPN with softmax
# cross-entropy on LVIS v1, 8 GPUs x 2 images, 1x (12 epochs, steps at 8 and 11), multi-scale training
# (shorter side 640-800), single-scale 1333x800 testing, score threshold 1e-4, 300 detections per image.
# mmdet's LVIS v1 config is the same model and schedule with RFS; the baseline samples images uniformly.
_base_ = 'mmdet::lvis/mask-rcnn_r50_fpn_sample1e-3_ms-1x_lvis-v1.py'
custom_imports = dict(imports=['eqlv2.plugin'], allow_failed_imports=False)

data_root = 'resources/lvis_v1/'  # `eqlv2 train --data-root` replaces it
# torchvision's ImageNet ResNet-50 (what `torchvision://resnet50` names), fetched by the workflow's download
# rule so that compute nodes need no internet.
model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint='resources/downloads/resnet50-0676ba61.pth')))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True, poly2mask=False),  # as the original
    dict(type='RandomChoiceResize',
         scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataset = dict(
    type='LVISV1Dataset',
    data_root=data_root,
    ann_file='annotations/lvis_v1_train.json',
    data_prefix=dict(img=''),
    filter_cfg=dict(filter_empty_gt=True, min_size=32),
    pipeline=train_pipeline)
train_dataloader = dict(dataset=dict(_delete_=True, **train_dataset))
# The global batch, 8 GPUs x 2 images as the original (mmdet's schedule says the same): `eqlv2 train`
# gives each of N processes 16 / N images, so fewer GPUs keep the paper's batch, lr and schedule.
auto_scale_lr = dict(enable=False, base_batch_size=16)
test_dataloader = dict(dataset=dict(data_root=data_root))
test_evaluator = dict(ann_file=data_root + 'annotations/lvis_v1_val.json')
# No validation during training: evaluation is its own stage of the workflow.
val_dataloader = None
val_evaluator = None
val_cfg = None
train_cfg = dict(val_interval=13)
env_cfg = dict(dist_cfg=dict(backend='nccl'))
# Stop on a NaN/inf loss instead of training on; save EQLv2's per-rank gradient statistics at the end, and
# every method's per-class positive/negative classifier gradients (work_dir/classifier_gradients.pt).
custom_hooks = [dict(type='NonFiniteLossHook'), dict(type='GradientStatsHook'),
                dict(type='ClassifierGradientHook')]
