# Repeat factor sampling (Gupta et al., LVIS 2019), mmdet's ClassBalancedDataset (ceil rule).
# LVIS uses t = 0.001 on about 100k training images: classes in fewer than ~100 images are repeated, a class
# in one image 10 times.  On the toy's ~1000 images t = 0.001 would repeat almost nothing, so the toy keeps
# LVIS's repeat profile with t = 0.1 (a class in one image repeats ceil(sqrt(0.1 * 960)) = 10 times).
_base_ = './mask-rcnn_r18_fpn_ce_toy.py'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ClassBalancedDataset',
        oversample_thr=0.1,
        dataset={{_base_.train_dataset}}))
