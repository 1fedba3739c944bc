# cRT (Kang et al., ICLR 2020): re-train only the classifier of the trained baseline, from a re-initialised
# fc_cls (surgery "remove"), with class-aware sampling (a class uniformly, then one of its images).
# Everything else is frozen, batch-norm statistics included.  The workflow passes the surgery checkpoint
# with `eqlv2 train --load-from`.
_base_ = './mask-rcnn_r18_fpn_ce_toy.py'

model = dict(type='DecoupledMaskRCNN', trainable=['roi_head.bbox_head.fc_cls'])
train_dataloader = dict(sampler=dict(_delete_=True, type='ClassAwareSampler', num_sample_class=1))

# The original re-trains for as long as the end-to-end schedule (75k iterations at batch 16, steps at
# 2/3 and 14/15).  Only fc_cls learns here, and half the baseline's iterations is where the toy's
# classifier stops improving; the steps keep the original's fractions.
max_iters = 250  # half the end-to-end schedule, as before
train_cfg = dict(max_iters=max_iters, val_interval=max_iters + 1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=25),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 2 / 3), int(max_iters * 14 / 15)], gamma=0.1),
]
