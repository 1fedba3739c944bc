# LVIS v0.5 (1230 classes = 454 rare + 461 common + 315 frequent), the dataset of the EQL paper and of
# detectron2's LVIS model zoo, as mmdet's v0.5 configs read it: LVISV05Dataset, which maps v0.5's COCO 2014
# file names (COCO_train2014_000000000009.jpg) to the COCO 2017 folders' (000000000009.jpg), train images
# under train2017/, val images under val2017/.
# A config of lvis_v0.5/ inherits its LVIS v1 twin and this file, and puts these pieces where its twin
# has the v1 ones:
#     train_dataloader=dict(dataset={{_base_.lvis_v05_train}})      (RFS: dataset=dict(dataset=...))
#     test_dataloader=dict(dataset={{_base_.lvis_v05_val}})
# Merged into the twin's dicts, they change the class, files and folders and keep its pipelines and
# filters.  mmengine does not allow the same top-level key in two bases, so this file carries no `model`,
# `data_root` or `*_dataloader` of its own.
lvis_v05_num_classes = 1230
lvis_v05_train = dict(
    type='LVISV05Dataset',
    data_root='resources/lvis_v0_5/',  # `eqlv2 train --data-root` replaces it
    ann_file='annotations/lvis_v0.5_train.json',
    data_prefix=dict(img='train2017/'))
lvis_v05_val = dict(
    type='LVISV05Dataset',
    data_root='resources/lvis_v0_5/',
    ann_file='annotations/lvis_v0.5_val.json',
    data_prefix=dict(img='val2017/'))
lvis_v05_val_evaluator = dict(ann_file='resources/lvis_v0_5/annotations/lvis_v0.5_val.json')
lvis_v05_heads = dict(
    bbox_head=dict(num_classes=lvis_v05_num_classes),
    mask_head=dict(num_classes=lvis_v05_num_classes))
