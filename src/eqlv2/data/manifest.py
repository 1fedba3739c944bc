"""The files the LVIS (v1, v0.5) and OpenImages Challenge 2019 branches need, where to get them, their sha256.

Sizes and hashes of the dataset files are the TFDS ``url_checksums`` values collected in
``evaluation.md`` section 5.2 (LVIS publishes no checksums itself).  The ResNet-50 (-101) weights are the file
mmdet's ``init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')`` resolves to (mmengine's
``hub/torchvision_0.12.json``); torchvision names it after the first 8 hex digits of its sha256, and the
full hash and size below agree with that prefix.  mmengine looks for it in
``$TORCH_HOME/hub/checkpoints/resnet50-0676ba61.pth`` (default ``~/.cache/torch``), so download it there
on a compute node without internet access.

An entry may have ``sha256=None`` (hash not known): ``eqlv2 download`` then refuses it unless the caller
passes ``--sha256`` explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

_LVIS = "https://dl.fbaipublicfiles.com/LVIS"
_COCO = "http://images.cocodataset.org/zips"
_OI = "https://storage.googleapis.com/openimages/challenge_2019"
_TFDS = "TFDS url_checksums (evaluation.md 5.2)"


@dataclass(frozen=True)
class Entry:
    """One downloadable file: ``name`` is also its file name; ``size`` in bytes."""

    name: str
    url: str
    sha256: str | None
    size: int | None
    what: str
    dataset: str
    hash_source: str = ""


ENTRIES: tuple[Entry, ...] = (
    Entry(
        "lvis_v1_train.json.zip",
        f"{_LVIS}/lvis_v1_train.json.zip",
        "334a4caa374030a7817cf050364525e910f7960f9b6968cef47cffbf3893f8ba",
        350_264_821,
        "LVIS v1 train annotations (1203 categories; images are COCO 2017 train+val)",
        "lvis_v1",
        _TFDS,
    ),
    Entry(
        "lvis_v1_val.json.zip",
        f"{_LVIS}/lvis_v1_val.json.zip",
        "5cae9a3c79aadb667550c2b5dcf7f4d86e059a41ec91ef690225b667e28e9ba5",
        64_026_968,
        "LVIS v1 val annotations (19,809 images)",
        "lvis_v1",
        _TFDS,
    ),
    # LVIS v0.5 (1230 categories, the EQL paper's and detectron2's model zoo's dataset): no checksum is
    # known for its annotation archives (TFDS does not ship v0.5), so the workflow takes each file's hash
    # from the config (lvis.sha256) and `eqlv2 download` refuses them without --sha256.
    *(
        Entry(
            f"lvis_v0.5_{split}.json.zip",
            f"{_LVIS}/lvis_v0.5_{split}.json.zip",
            None,
            None,
            f"LVIS v0.5 {split} annotations (1230 categories; images are COCO 2017 {split})",
            "lvis_v0.5",
            "none known: LVIS publishes no checksums and TFDS does not cover v0.5; in the workflow, "
            f"check the file and set lvis.sha256.lvis_v0.5_{split}.json.zip in the config",
        )
        for split in ("train", "val")
    ),
    Entry(
        "train2017.zip",
        f"{_COCO}/train2017.zip",
        "69a8bb58ea5f8f99d24875f21416de2e9ded3178e903f1f7603e283b9e06d929",
        19_336_861_798,
        "COCO 2017 train images (used by LVIS v1 train and val, and LVIS v0.5 train)",
        "lvis_v1",
        _TFDS,
    ),
    Entry(
        "val2017.zip",
        f"{_COCO}/val2017.zip",
        "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05",
        815_585_330,
        "COCO 2017 val images (used by LVIS v1 val and LVIS v0.5 val)",
        "lvis_v1",
        _TFDS,
    ),
    Entry(
        "challenge-2019-train-detection-bbox.csv",
        f"{_OI}/challenge-2019-train-detection-bbox.csv",
        "69b9ae566c4f8e51b02af8daaa891830878a4db8e66f873e40a1f77eb10a6e66",
        996_981_249,
        "OpenImages Challenge 2019 detection: train boxes",
        "openimages_challenge2019",
        _TFDS,
    ),
    Entry(
        "challenge-2019-train-detection-human-imagelabels.csv",
        f"{_OI}/challenge-2019-train-detection-human-imagelabels.csv",
        "3e293861a20064cd0d4e54f7947d3c18a4607c68e515ef315951454d4fada94f",
        240_365_679,
        "OpenImages Challenge 2019 detection: train verified image-level labels",
        "openimages_challenge2019",
        _TFDS,
    ),
    Entry(
        "challenge-2019-validation-detection-bbox.csv",
        f"{_OI}/challenge-2019-validation-detection-bbox.csv",
        "3ffee3420c2810fe89b045ee2cacf2649870d40f14b15c34e12db1b688e3bf95",
        14_918_907,
        "OpenImages Challenge 2019 detection: validation boxes",
        "openimages_challenge2019",
        _TFDS,
    ),
    Entry(
        "challenge-2019-validation-detection-human-imagelabels.csv",
        f"{_OI}/challenge-2019-validation-detection-human-imagelabels.csv",
        "0169a243664eeb82dbee3b2d2500db909d5f257d74780acc0ebd6853d1136e68",
        5_502_115,
        "OpenImages Challenge 2019 detection: validation verified image-level labels",
        "openimages_challenge2019",
        _TFDS,
    ),
    Entry(
        "challenge-2019-classes-description-500.csv",
        f"{_OI}/challenge-2019-classes-description-500.csv",
        "b84ed490a4f1cd1fe44adb2d4b5b7a3d25a70b450d34bd82d377527c379d3e03",
        9_237,
        "OpenImages Challenge 2019: the 500 class ids and names",
        "openimages_challenge2019",
        _TFDS,
    ),
    Entry(
        "challenge-2019-label500-hierarchy.json",
        f"{_OI}/challenge-2019-label500-hierarchy.json",
        "dcba144d2230d01ace9f2b1ef1b54df65e29f855356ed51cfc4f6e10300d7d8b",
        44_428,
        "OpenImages Challenge 2019: the class hierarchy (for expanding labels)",
        "openimages_challenge2019",
        _TFDS,
    ),
    Entry(
        "resnet50-0676ba61.pth",
        "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "0676ba61b6795bbe1773cffd859882e5e297624d384b6993f7c9e683e722fb8a",
        102_530_333,
        "ImageNet ResNet-50 (torchvision IMAGENET1K_V1), mmdet's 'torchvision://resnet50' backbone init",
        "backbone",
        "third-party records of the file (Hugging Face LFS pointer weleen/syncs, several projects' "
        "pinned hashes), all agreeing and matching torchvision's 8-digit prefix 0676ba61",
    ),
    Entry(
        "resnet101-63fe2227.pth",
        "https://download.pytorch.org/models/resnet101-63fe2227.pth",
        "63fe2227b86e8f1f2063f43a75c84d195911b6a0eace650907dd3dc62dd49a0a",
        None,
        "ImageNet ResNet-101 (torchvision IMAGENET1K_V1), mmdet's 'torchvision://resnet101' backbone init",
        "backbone",
        "two independent third-party records of the file's sha256 (a Rust checkpoint table and a "
        "PyTorch-to-TF weight converter), agreeing and matching torchvision's 8-digit prefix 63fe2227",
    ),
)


# The original project's LVIS v1 checkpoints (Mask R-CNN R50-FPN, its README's table), Google Drive file ids.
ORIGINAL_CHECKPOINTS = {
    "baseline": "1DMK5wHtq1tjOkvuu917JWE5M5kem7lJe",
    "eql": "18azKn5GkeqnZGbqdLvv25ZS-Xbg_afOZ",
    "rfs": "1dbD-oovvyqWArg9FrpqQ841JJXPMZblw",
    "lws": "1CbsOgGr_gJMqqWCW-h8utcm8PeNGjqr7",
    "crt": "1XsTBp2MkDKnvkvYOJloJakArCcF_DPgn",
    "bags": "1kr3ObT_Vh3YKOjHxjGj7prJ_B_zA7m8s",
    "eqlv2": "1kCTRSI9CrUSEtSd9IB00rbLrLteoR_4B",
}


def original_checkpoint_name(method: str) -> str:
    """The manifest name (and file name under resources/downloads/) of the original's checkpoint."""
    return f"eqlv2-original-lvis-v1-{method}.pth"


ENTRIES += tuple(
    Entry(
        original_checkpoint_name(method),
        f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t",
        None,
        None,
        f"the original project's published {method} checkpoint (Mask R-CNN R50-FPN, LVIS v1, mmdet 2.3)",
        "original_checkpoints",
        "none published: the original README links Google Drive files without checksums; in the "
        f"workflow, check the file and set published.{method}.sha256 in the config",
    )
    for method, file_id in ORIGINAL_CHECKPOINTS.items()
)


def get_entry(name: str) -> Entry:
    """The manifest entry called ``name``; a ``ValueError`` listing the known names otherwise."""
    for entry in ENTRIES:
        if entry.name == name:
            return entry
    raise ValueError(f"no manifest entry {name!r}; known: {', '.join(e.name for e in ENTRIES)}")


def format_manifest(entries: tuple[Entry, ...] | None = None) -> str:
    """The table ``eqlv2 download --list`` prints."""
    lines = []
    for entry in ENTRIES if entries is None else entries:
        size = f"{entry.size:,} bytes" if entry.size is not None else "size unknown"
        lines.append(f"{entry.name}  [{entry.dataset}, {size}]")
        lines.append(f"    {entry.what}")
        lines.append(f"    {entry.url}")
        lines.append(f"    sha256 {entry.sha256 or 'unknown: pass --sha256 to download it'}")
    return "\n".join(lines)
