# BAGS (Li et al., CVPR 2020), the original's GroupSoftmax: classes grouped by training instance count
# (bins 10, 100, 1000) plus a background group, a softmax per group with an "others" logit, "others"
# sampled at 8x the group's foreground RoIs.  Only fc_cls is re-trained, from the baseline with fc_cls
# removed (surgery "remove"), on uniformly sampled images as in the original (no RFS, no class-aware).
_base_ = './mask-rcnn_r18_fpn_crt_toy.py'

model = dict(
    roi_head=dict(
        bbox_head=dict(
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(_delete_=True, type='GroupSoftmax', num_classes=48,
                          ann_file='resources/toy/annotations/lvis_v1_train.json'))))
train_dataloader = dict(sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True))
