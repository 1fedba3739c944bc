"""The rows of the paper tables: display names, training style and the original's published numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    key: str  # the name used in config files and under results/<dataset>/
    name: str  # the row label of the paper table
    end2end: bool  # False for the decoupled methods, retrained from the baseline's checkpoint
    beyond_paper: bool = False  # a row the EQLv2 paper's table does not have (today's baselines)
    own: bool = False  # a method of one's own, named in the workflow config (examples/my_loss/)


METHODS = {
    m.key: m
    for m in (
        Method("baseline", "Baseline", True),
        Method("eql", "EQL", True),
        Method("rfs", "RFS", True),
        Method("lws", "LWS", False),
        Method("crt", "cRT", False),
        Method("bags", "BAGS", False),
        Method("eqlv2", "EQLv2", True),
        Method("eqlv2_rfs", "EQLv2 + RFS", True),
        # Beyond the paper: the long-tail baselines that mmdetection and detectron2 ship today.
        Method("seesaw", "Seesaw", True, beyond_paper=True),
        Method("seesaw_rfs", "Seesaw + RFS", True, beyond_paper=True),
        Method("fed_loss", "Federated Loss", True, beyond_paper=True),
        Method("ecm", "ECM", True, beyond_paper=True),
    )
}

# Mask AP, APr, APc, APf (%) of Mask R-CNN R50-FPN 1x on LVIS v1 val, from the original README's table.
PUBLISHED_LVIS_V1_SEGM = {
    "baseline": (16.1, 0.0, 12.0, 27.4),
    "eql": (18.6, 2.1, 17.4, 27.2),
    "rfs": (22.2, 11.5, 21.2, 28.0),
    "lws": (17.0, 2.0, 13.5, 27.4),
    "crt": (22.1, 11.9, 20.2, 29.0),
    "bags": (23.1, 13.1, 22.5, 28.2),
    "eqlv2": (23.7, 14.9, 22.8, 28.6),
}
# Box AP is published only for EQLv2 (the README's example log).
PUBLISHED_LVIS_V1_BBOX_AP = {"eqlv2": 24.2}
# mmdetection's own Seesaw numbers on LVIS v1 val (mask AP, box AP; configs/seesaw_loss/metafile.yml of mmdet
# 3.3.0), Mask R-CNN R50-FPN at a 2x schedule: a reference, not a like-for-like target for our 1x rows.
REFERENCE_LVIS_V1_2X = {"seesaw": (25.0, 25.6), "seesaw_rfs": (26.4, 27.6)}
# The ECM-Loss README's numbers (janghyuncho/ECM-Loss; mask AP, box AP), Mask R-CNN R50-FPN 1x on LVIS v1
# val with RFS, NormedLinear (T=20) and a normed mask head: a reference under another recipe than our row's.
REFERENCE_LVIS_V1_1X = {"ecm": (26.4, 26.9)}


def get_method(key: str, own: Mapping[str, Method] | None = None) -> Method:
    """A known row, or one of ``own``, the methods of one's own that a workflow config names."""
    if key in METHODS:
        return METHODS[key]
    if own and key in own:
        return own[key]
    raise ValueError(
        f"unknown method '{key}'; known: {', '.join(METHODS)}; "
        f"a method of one's own needs a row label (eqlv2 table --own {key}=LABEL)"
    )


def configured_methods(entries: Mapping[str, Mapping]) -> dict[str, Method]:
    """The rows of a workflow config's ``methods`` section, in its order; ValueError on a bad entry.

    A key of :data:`METHODS` is that row, whose label and training style are fixed (so a ``name`` on it
    is refused: it would put the paper's numbers beside another method).  Any other key is a method of
    one's own: its ``name`` is the row label, which must differ from every other label, and it is
    decoupled exactly when it has an ``init`` (retrained from another method's checkpoint).  The
    schema has checked the types already; what it cannot say without listing the known keys a second
    time is checked here, every problem in one line.
    """
    labels = {method.name: f"the known method {key}" for key, method in METHODS.items()}
    rows, problems = {}, []
    for key, spec in entries.items():
        name = spec.get("name")
        if key in METHODS:
            if name is not None:
                problems.append(
                    f"methods.{key}.name: '{key}' is a known method, whose row label is "
                    f"'{METHODS[key].name}' (give a method of one's own a key of its own)"
                )
            rows[key] = METHODS[key]
        elif name is None:
            problems.append(
                f"methods: '{key}' is not one of the known methods ({', '.join(METHODS)}) and has no "
                "name (a method of one's own needs one: its row label in the table)"
            )
        elif name in labels:
            problems.append(f"methods.{key}.name: '{name}' is already the row label of {labels[name]}")
        else:
            labels[name] = f"methods.{key}"
            rows[key] = Method(key, name, end2end="init" not in spec, own=True)
    if problems:
        raise ValueError("; ".join(problems))
    return rows


@dataclass(frozen=True)
class OpenImagesMethod:
    """A row of the OpenImages table: a Faster R-CNN backbone and a classification loss."""

    key: str  # <backbone>_<loss>, the name used in config files and under results/<dataset>/openimages/
    name: str  # the row label, as in the original README's OpenImages table
    backbone_weights: str | None  # the ImageNet weights (a manifest file) the real-data config starts from


def _openimages_methods() -> dict[str, OpenImagesMethod]:
    backbones = {
        "r18": ("Faster-R18 (half width)", None),  # the embedded default's CPU-sized model, from scratch
        "r50": ("Faster-R50", "resnet50-0676ba61.pth"),
        "r101": ("Faster-R101", "resnet101-63fe2227.pth"),
    }
    losses = {"ce": "", "eql": " + EQL", "eqlv2": " + EQLv2"}
    return {
        f"{backbone}_{loss}": OpenImagesMethod(f"{backbone}_{loss}", label + suffix, weights)
        for backbone, (label, weights) in backbones.items()
        for loss, suffix in losses.items()
    }


OPENIMAGES_METHODS = _openimages_methods()

# AP, AP1..AP5 (%) at IoU 0.5 on OpenImages Challenge 2019 val, from the original README's OpenImages table
# (AP1 is the rarest fifth of the 500 classes by training instances).
PUBLISHED_OPENIMAGES = {
    "r50_ce": (43.1, 26.3, 42.5, 45.2, 48.2, 52.6),
    "r50_eql": (45.3, 32.7, 44.6, 47.3, 48.3, 53.1),
    "r50_eqlv2": (52.6, 48.6, 52.0, 53.0, 53.4, 55.8),
    "r101_ce": (46.0, 29.2, 45.5, 49.3, 50.9, 54.7),
    "r101_eql": (48.0, 36.1, 47.2, 50.5, 51.0, 55.0),
    "r101_eqlv2": (55.1, 51.0, 55.2, 56.6, 55.6, 57.5),
}


def get_openimages_method(key: str) -> OpenImagesMethod:
    try:
        return OPENIMAGES_METHODS[key]
    except KeyError:
        raise ValueError(
            f"unknown OpenImages method '{key}'; known: {', '.join(OPENIMAGES_METHODS)}"
        ) from None
