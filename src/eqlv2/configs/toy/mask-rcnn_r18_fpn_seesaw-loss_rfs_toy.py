# Seesaw Loss with repeat factor sampling, beyond the paper's table: the toy Seesaw config over the toy RFS
# config's ClassBalancedDataset (t = 0.1 on the toy, for LVIS's repeat profile; see the RFS config).
_base_ = './mask-rcnn_r18_fpn_seesaw-loss_toy.py'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ClassBalancedDataset',
        oversample_thr=0.1,
        dataset={{_base_.train_dataset}}))
