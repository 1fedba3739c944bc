# Seesaw Loss with RFS (t = 0.001), beyond the paper's table, as mmdet 3.3's
# mmdet::seesaw_loss/mask-rcnn_r50_fpn_seesaw-loss_sample1e-3-ms-2x_lvis-v1.py but at our 1x schedule.
_base_ = './mask-rcnn_r50_fpn_seesaw-loss_ms-1x_lvis-v1.py'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ClassBalancedDataset',
        oversample_thr=1e-3,
        dataset={{_base_.train_dataset}}))
