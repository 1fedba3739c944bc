"""``eqlv2 import-checkpoint``: a checkpoint of the original project (mmdet 2.3) for this package's models.

The original's Mask R-CNN modules kept their names in mmdet 3 (ResNet, FPN, ``rpn_conv``/``rpn_cls``/
``rpn_reg``, ``shared_fcs``/``fc_cls``/``fc_reg``, the mask head), and this package's EQLv2, EQL and
GroupSoftmax size ``fc_cls`` as the original did (C + 1, C and C + 1 + G outputs), so most keys carry
over unchanged.  What differs:

* LWS: the original's ``fc_cls.weight_scaler`` has shape (C + 1, 1); ``LWSLinear`` keeps it as
  ``fc_cls.scales`` with shape (C + 1,).
* A checkpoint saved from a ``DistributedDataParallel`` model may prefix every key with ``module.``.
* Everything but the weights (the optimizer state, mmcv 1.x's ``meta``) is left behind.

The result is checked against the model the config builds: every key present, no key left over, every
shape equal.  A difference is an error that names the checkpoint and the keys, rather than a
non-strict load that would quietly evaluate a half-initialised model.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from mmdet.registry import MODELS
from mmengine.registry import init_default_scope
from torch import Tensor

from eqlv2.checkpoint import load_checkpoint
from eqlv2.config import load_run_config
from eqlv2.io import atomic_torch_save

# (suffix in the original, suffix here, how the tensor changes)
RENAMES: tuple[tuple[str, str, Callable[[Tensor], Tensor]], ...] = (
    (".fc_cls.weight_scaler", ".fc_cls.scales", lambda t: t.reshape(-1)),
)
DDP_PREFIX = "module."


def convert_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The original's key names and shapes translated to this package's (see the module docstring)."""
    converted = {}
    for key, value in state_dict.items():
        key = key.removeprefix(DDP_PREFIX)
        for old, new, change in RENAMES:
            if key.endswith(old):
                key, value = key[: -len(old)] + new, change(value)
        converted[key] = value
    return converted


def _describe(keys: list[str]) -> str:
    shown = ", ".join(keys[:5])
    return f"{shown} (+{len(keys) - 5} more)" if len(keys) > 5 else shown


def import_checkpoint(
    ckpt_path: str | Path, config: str | Path, out: str | Path, data_root: str | Path | None = None
) -> Path:
    """Write ``out``: the weights of ``ckpt_path`` named and shaped for the model of ``config``."""
    ckpt_path = Path(ckpt_path)
    checkpoint = load_checkpoint(ckpt_path)
    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise ValueError(f"{ckpt_path}: no 'state_dict' in the checkpoint")
    converted = convert_state_dict(state_dict)

    cfg = load_run_config(config, data_root, split="test")
    init_default_scope(cfg.get("default_scope", "mmdet"))
    expected = MODELS.build(cfg.model).state_dict()
    missing = [k for k in expected if k not in converted]
    extra = [k for k in converted if k not in expected]
    if missing or extra:
        problems = [f"missing {_describe(missing)}"] if missing else []
        problems += [f"not in the model {_describe(extra)}"] if extra else []
        raise ValueError(f"{ckpt_path}: state_dict does not fit {config}: " + "; ".join(problems))
    wrong = [
        f"{k} {tuple(converted[k].shape)} (model: {tuple(v.shape)})"
        for k, v in expected.items()
        if converted[k].shape != v.shape
    ]
    if wrong:
        raise ValueError(f"{ckpt_path}: state_dict does not fit {config}: shape of {_describe(wrong)}")

    original_meta = checkpoint.get("meta") or {}
    meta = {
        "eqlv2_imported_from": str(ckpt_path),
        "mmdet_version": original_meta.get("mmdet_version", "unknown"),
        "epoch": original_meta.get("epoch"),
        "iter": original_meta.get("iter"),
    }
    return atomic_torch_save({"meta": meta, "state_dict": converted}, out)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "import-checkpoint",
        help="convert a checkpoint of the original project (mmdet 2.3) for this package's configs",
        description=(
            "Rename the original's keys (LWS's weight_scaler), drop its optimizer state and check every "
            "key and shape against the model CONFIG builds.\n\n"
            "Example:\n  eqlv2 import-checkpoint resources/downloads/eqlv2-original-lvis-v1-eqlv2.pth "
            "--config lvis_v1/mask-rcnn_r50_fpn_eqlv2-loss_ms-1x_lvis-v1.py --data-root resources/lvis_v1 "
            "--out results/lvis_v1/published/eqlv2/model_final.pth"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ckpt", help="the original's checkpoint (epoch_12.pth, latest.pth)")
    p.add_argument("--config", required=True, help="the config of the same method here")
    p.add_argument(
        "--data-root", help="dataset folder (class names and statistics come from its annotations)"
    )
    p.add_argument("--out", required=True, help="the converted checkpoint")
    p.set_defaults(func=command, verb="import-checkpoint")


def command(args: argparse.Namespace) -> None:
    out = import_checkpoint(args.ckpt, args.config, args.out, args.data_root)
    print(f"wrote {out}")
