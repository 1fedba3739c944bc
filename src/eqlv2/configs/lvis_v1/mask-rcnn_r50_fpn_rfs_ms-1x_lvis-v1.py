# RFS (configs/end2end/mask_rcnn_r50_sample1e-3_8x2_1x.py): repeat factor sampling with t = 0.001.
_base_ = './mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ClassBalancedDataset',
        oversample_thr=1e-3,
        dataset={{_base_.train_dataset}}))
