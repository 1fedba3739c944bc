"""``eqlv2 surgery``: prepare a baseline checkpoint for a decoupled (cRT, LWS, BAGS) second stage.

The port of the original ``tools/ckpt_surgery.py``.  Both methods drop the checkpoint's training state,
so that the decoupled run loads only weights (``load_from``) and starts a fresh schedule:

* ``meta`` (epoch/iteration counters, seed, dataset meta) and ``optimizer`` (SGD momentum buffers): the
  only training state an mmcv 1 checkpoint had, and all the original deleted;
* ``message_hub`` (logged history and ``runtime_info`` with the iteration) and ``param_schedulers``
  (warm-up and step positions): mmengine adds these to every checkpoint.  Left in, they describe the end
  of the baseline's schedule, not the start of the new one; they have to go for the same reason as the
  other two.

``remove`` additionally drops every ``state_dict`` key containing ``fc_cls`` (the classifier: weight and
bias, and an LWS head's ``scales``), so that cRT and BAGS re-initialise it.  ``reset`` keeps the state
dict as it is (LWS trains scales on top of the baseline classifier).  The box regressor, the mask head and
an EQLv2 checkpoint's ``loss_cls`` statistics buffers are kept, as in the original.

Outputs are written as ``model_reset_{method}.pth`` through a temporary file, so an interrupted or failed
run leaves nothing that looks finished.  Use the result with ``load_from``, never ``resume``: it has no
training state to resume from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from eqlv2.checkpoint import load_checkpoint
from eqlv2.io import atomic_torch_save

METHODS = ("remove", "reset")
# what a run saved about its own training: a decoupled stage starts its own (classifier_gradients too)
TRAINING_STATE_KEYS = ("meta", "optimizer", "message_hub", "param_schedulers", "classifier_gradients")
CLASSIFIER_SUBSTRING = "fc_cls"


def surgery(ckpt_path: str | Path, method: str, output_dir: str | Path = ".") -> Path:
    """Write ``output_dir/model_reset_{method}.pth`` from ``ckpt_path``; print every key dropped."""
    ckpt_path = Path(ckpt_path)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    checkpoint = load_checkpoint(ckpt_path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ValueError(f"{ckpt_path}: no 'state_dict' in the checkpoint; is it a saved training run?")

    for key in TRAINING_STATE_KEYS:
        if key in checkpoint:
            del checkpoint[key]
            print(f"dropped top-level key: {key}")

    if method == "remove":
        state_dict = checkpoint["state_dict"]
        classifier_keys = [k for k in state_dict if CLASSIFIER_SUBSTRING in k]
        if not classifier_keys:
            raise ValueError(
                f"{ckpt_path}: no state_dict key contains {CLASSIFIER_SUBSTRING!r}; nothing to remove"
            )
        for key in classifier_keys:
            del state_dict[key]
            print(f"dropped state_dict key: {key}")

    return atomic_torch_save(checkpoint, Path(output_dir) / f"model_reset_{method}.pth")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "surgery",
        help="strip a baseline checkpoint for decoupled classifier re-training (cRT, LWS, BAGS)",
        description=(
            "Drop the training state (meta, optimizer, message_hub, param_schedulers) of CKPT and, with "
            "--method remove, every state_dict key containing 'fc_cls'.  Writes "
            "OUTPUT_DIR/model_reset_{METHOD}.pth, to be used as load_from of the second stage: remove for "
            "cRT and BAGS (the classifier is re-initialised), reset for LWS (it is kept).\n\n"
            "Example:\n  eqlv2 surgery --ckpt-path work_dirs/ce/iter_1000.pth --method remove "
            "--output-dir work_dirs/ce"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--ckpt-path", required=True, metavar="CKPT", help="baseline checkpoint")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--output-dir", default=".", metavar="DIR", help="default: the current directory")
    p.set_defaults(func=command, verb="surgery")


def command(args: argparse.Namespace) -> None:
    print(surgery(args.ckpt_path, args.method, args.output_dir))
