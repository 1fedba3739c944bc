# cRT (configs/decouple/crt_r50_8x2_1x.py): only fc_cls re-trained (re-initialised by surgery "remove"),
# everything else frozen; class-aware sampling; 75k iterations at batch 16, lr 0.02, warm-up 500,
# steps at 50k and 70k.  The workflow passes the surgery checkpoint with `eqlv2 train --load-from`.
_base_ = './mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py'

model = dict(type='DecoupledMaskRCNN', trainable=['roi_head.bbox_head.fc_cls'])
train_dataloader = dict(
    sampler=dict(_delete_=True, type='ClassAwareSampler', num_sample_class=1),
    batch_sampler=None)
max_iters = 75000
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[50000, 70000], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=5000))
log_processor = dict(by_epoch=False)
