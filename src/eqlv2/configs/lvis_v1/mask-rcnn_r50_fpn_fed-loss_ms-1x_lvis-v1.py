# Federated Loss (Zhou et al., "Probabilistic two-stage detection", 2021), with detectron2's defaults for
# LVIS (use_fed_loss: 50 classes per iteration, the RoIs' ground-truth classes plus classes drawn with
# probability proportional to image_count^0.5); sigmoid BCE with C outputs; no RFS.  Each process draws
# its own subset from its own RoIs (seed + rank), as detectron2 does.
_base_ = ['./mask-rcnn_r50_fpn_ce_ms-1x_lvis-v1.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(_delete_=True, type='FederatedLoss', num_classes=1203,
                          ann_file='resources/lvis_v1/annotations/lvis_v1_train.json',
                          fed_loss_num_classes=50, freq_weight_power=0.5, seed=0))))
