"""Building an mmengine config for one run: the package's config files, the data root, the classes.

The workflow passes the dataset location on the command line (``--data-root``) instead of editing config
files, and the class names come from the annotation file, so the same config trains on any dataset in
the LVIS v1 schema.  A class count in the model that disagrees with the data is an error here rather than
a shape mismatch deep inside training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mmengine.config import Config

DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def resolve_config(name: str | Path) -> Path:
    """A config path as given, or else a name under the package's ``configs/`` folder."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = Path(str(resources.files("eqlv2") / "configs" / str(name)))
    if packaged.is_file():
        return packaged
    raise FileNotFoundError(f"config {name} is neither a file nor a config of the eqlv2 package")


def _innermost_datasets(dataset_cfg):
    """The datasets inside wrappers (ClassBalancedDataset, ...): the ones that read annotation files."""
    if dataset_cfg is None:
        return
    if "dataset" in dataset_cfg:
        yield from _innermost_datasets(dataset_cfg["dataset"])
    elif "datasets" in dataset_cfg:
        for inner in dataset_cfg["datasets"]:
            yield from _innermost_datasets(inner)
    else:
        yield dataset_cfg


@dataclass(frozen=True)
class AnnotationSummary:
    """What a run needs to know of an annotation file before mmdet reads it."""

    category_names: tuple[str, ...]
    # relative to the image folder (data_root + data_prefix.img), as mmdet's LVIS/COCO datasets resolve them
    image_files: tuple[str, ...]


# mmdet's LVIS v0.5 class under both of its registered names; v0.5 images carry a ``file_name``.
_V05_DATASETS = ("LVISV05Dataset", "LVISDataset")


def _image_file(ann_file: Path, image: dict, dataset_type: str | None) -> str:
    """The path of an image below the image folder, as the dataset class that reads ``ann_file`` forms it.

    mmdet's LVISV05Dataset takes ``file_name`` and maps v0.5's COCO 2014 names
    (``COCO_train2014_000000000009.jpg``) to the 2017 folders' (``000000000009.jpg``, the last 16
    characters), LVISV1Dataset the split folder and file of ``coco_url`` (v1 has no ``file_name``), and
    CocoDataset (the OpenImages JSON) ``file_name``.  Without a type (or another one) ``coco_url`` wins.
    """
    if dataset_type is not None and dataset_type.split(".")[-1] in _V05_DATASETS:
        if "file_name" not in image:
            raise ValueError(f"{ann_file}: image {image.get('id')} has no 'file_name' (LVIS v0.5 needs it)")
        name = image["file_name"]
        return name[-16:] if name.startswith("COCO") else name
    if "coco_url" in image:
        return image["coco_url"].replace("http://images.cocodataset.org/", "")
    if "file_name" in image:
        return image["file_name"]
    raise ValueError(f"{ann_file}: image {image.get('id')} has neither 'coco_url' nor 'file_name'")


def read_annotation_summary(ann_file: str | Path, dataset_type: str | None = None) -> AnnotationSummary:
    """Category names (in id order) and image paths of an LVIS/COCO-style file, with clear errors.

    ``dataset_type`` is the mmdet dataset class that will read the file (see :func:`_image_file`).
    """
    ann_file = Path(ann_file)
    try:
        doc = json.loads(ann_file.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file {ann_file} does not exist") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{ann_file}: not valid JSON ({err})") from None
    for field in ("categories", "images"):
        if not isinstance(doc, dict) or not isinstance(doc.get(field), list):
            raise ValueError(f"{ann_file}: field '{field}' is missing or not a list")
    try:
        categories = sorted(doc["categories"], key=lambda c: c["id"])
        names = tuple(c["name"] for c in categories)
    except (KeyError, TypeError) as err:
        raise ValueError(f"{ann_file}: a category lacks the field {err}") from None
    files = tuple(_image_file(ann_file, image, dataset_type) for image in doc["images"])
    return AnnotationSummary(names, files)


def check_images_exist(ann_file: Path, image_root: Path, files: tuple[str, ...]) -> None:
    """Fail before training, naming the annotation file and the first missing image."""
    missing = [f for f in files if not (image_root / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{ann_file}: {len(missing)} of {len(files)} images are missing under {image_root}, "
            f"the first: {image_root / missing[0]}"
        )


def _ann_path(dataset_cfg) -> Path:
    return Path(dataset_cfg.get("data_root") or "") / dataset_cfg["ann_file"]


def _model_num_classes(cfg: Config) -> list[tuple[str, int]]:
    found = []
    roi_head = cfg.model.get("roi_head", {})
    for head in ("bbox_head", "mask_head"):
        if roi_head.get(head) and "num_classes" in roi_head[head]:  # None: no such branch
            found.append((f"model.roi_head.{head}.num_classes", roi_head[head]["num_classes"]))
    return found


def training_ann_file(cfg: Config) -> Path:
    """The training annotation file of ``cfg`` (its innermost training dataset), where class counts live."""
    loader = cfg.get("train_dataloader")
    if not loader:
        raise ValueError("the config has no train_dataloader to read training class counts from")
    return _ann_path(next(_innermost_datasets(loader["dataset"])))


def _point_losses_at_training_annotations(cfg: Config) -> None:
    """Losses that read class statistics (EQL, GroupSoftmax) read them from the training annotations."""
    loss_cls = cfg.model.get("roi_head", {}).get("bbox_head", {}).get("loss_cls", {})
    if "ann_file" in loss_cls and cfg.get("train_dataloader"):
        loss_cls["ann_file"] = str(training_ann_file(cfg))


def load_run_config(
    config: str | Path,
    data_root: str | Path | None = None,
    cfg_options: dict | None = None,
    split: str = "train",
) -> Config:
    """Load ``config``, point every dataset at ``data_root`` and name the classes from the data."""
    cfg = Config.fromfile(str(resolve_config(config)))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    for key in DATALOADERS:
        loader = cfg.get(key)
        if not loader:
            continue
        datasets = list(_innermost_datasets(loader["dataset"]))
        if data_root is not None:
            for dataset in datasets:
                dataset["data_root"] = str(data_root)
        evaluator = cfg.get(key.replace("dataloader", "evaluator"))
        if evaluator and "ann_file" in evaluator:
            evaluator["ann_file"] = str(_ann_path(datasets[0]))
    _point_losses_at_training_annotations(cfg)
    loader = cfg.get(f"{split}_dataloader")
    if loader:
        datasets = list(_innermost_datasets(loader["dataset"]))
        ann_file = _ann_path(datasets[0])
        summary = read_annotation_summary(ann_file, datasets[0].get("type"))
        classes = summary.category_names
        prefix = (datasets[0].get("data_prefix") or {}).get("img", "")
        check_images_exist(ann_file, Path(datasets[0].get("data_root") or "") / prefix, summary.image_files)
        for name, value in _model_num_classes(cfg):
            if value != len(classes):
                raise ValueError(
                    f"{ann_file} has {len(classes)} categories but the config sets {name}={value}"
                )
        for dataset in datasets:
            dataset["metainfo"] = dict(classes=classes)
    return cfg
