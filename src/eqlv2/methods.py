"""The methods of the paper table: display names, training style and the original's LVIS v1 numbers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    key: str  # the name used in config files and under results/<dataset>/
    name: str  # the row label of the paper table
    end2end: bool  # False for the decoupled methods, retrained from the baseline's checkpoint


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


def get_method(key: str) -> Method:
    try:
        return METHODS[key]
    except KeyError:
        raise ValueError(f"unknown method '{key}'; known: {', '.join(METHODS)}") from None
