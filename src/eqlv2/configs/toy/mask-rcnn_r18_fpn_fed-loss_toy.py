# Federated Loss (Zhou et al., "Probabilistic two-stage detection", 2021; detectron2's use_fed_loss):
# sigmoid BCE with C outputs over the RoIs' ground-truth classes plus classes drawn with probability
# proportional to image_count^0.5.  detectron2's 50 classes are 4% of LVIS's 1203; on the toy the ground
# truth of a 4-image batch alone covers about 10 of the 48 classes (mean 9.9, 5-16 over 2000 random
# batches of the default toy), so 50 would be every class, a plain sigmoid BCE.  16 keeps the ground truth
# and draws about 6 more per iteration: a third of the classes, the rest get no gradient.
_base_ = ['./mask-rcnn_r18_fpn_ce_toy.py', '../_base_/sigmoid_prior_init.py']

model = dict(
    roi_head=dict(
        bbox_head=dict(
            init_cfg={{_base_.sigmoid_prior_init_cfg}},  # every fc_cls bias starts at -log(0.999/0.001)
            # ann_file is set to the training annotations by `eqlv2 train`/`eqlv2 test`
            loss_cls=dict(_delete_=True, type='FederatedLoss', num_classes=48,
                          ann_file='resources/toy/annotations/lvis_v1_train.json',
                          fed_loss_num_classes=16, freq_weight_power=0.5, seed=0))))
