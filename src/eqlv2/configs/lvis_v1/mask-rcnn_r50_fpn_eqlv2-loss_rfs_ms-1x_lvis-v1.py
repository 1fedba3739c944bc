# EQLv2 with RFS (t = 0.001): not shipped by the original; its author says it helps further (issue #19).
_base_ = './mask-rcnn_r50_fpn_eqlv2-loss_ms-1x_lvis-v1.py'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ClassBalancedDataset',
        oversample_thr=1e-3,
        dataset={{_base_.train_dataset}}))
