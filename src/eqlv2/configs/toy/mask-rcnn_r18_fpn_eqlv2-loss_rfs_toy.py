# EQLv2 trained on repeat-factor sampled data.  No configuration of the original ships this; its author
# says the combination improves further (tztztztztz/eqlv2 issue #19).
_base_ = './mask-rcnn_r18_fpn_eqlv2-loss_toy.py'

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ClassBalancedDataset',
        oversample_thr=0.1,  # LVIS's t = 0.001 scaled to the toy's size, as in the RFS config
        dataset={{_base_.train_dataset}}))
