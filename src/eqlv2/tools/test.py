"""``eqlv2 test``: run a trained detector on the test split and write COCO-style result files.

Scoring is a separate stage (``eqlv2 evaluate-lvis``, or ``convert-predictions`` and
``evaluate-openimages``), so that changing how results are evaluated never reruns inference.  The config's
test evaluator (LVISMetric for the LVIS configs, CocoMetric for the OpenImages ones) only formats results:
one file per metric it names (``bbox``, ``segm``).  Result files are written to a temporary folder and
renamed into place.

``norcal_gamma`` switches the box head to ``NorCalBBoxHead`` (eqlv2.models.norcal) for this run only: the
trained weights load unchanged and the class scores are calibrated before mmdet's threshold, NMS and
per-image cut, with counts from the config's training annotations.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from mmengine.config import DictAction

from eqlv2.checkpoint import allow_mmengine_checkpoints
from eqlv2.compat import import_lvis
from eqlv2.config import load_run_config, training_ann_file
from eqlv2.distributed import prepare_launcher
from eqlv2.engine.run import build_runner

RESULT_TYPES = ("bbox", "segm")
NORCAL_HEADS = ("Shared2FCBBoxHead", "NorCalBBoxHead")


def apply_norcal(cfg, gamma: float, count: str = "image") -> None:
    """Make ``cfg``'s softmax box head a ``NorCalBBoxHead`` with ``gamma`` and the training ``count``.

    Raises:
        ValueError: The box head is not a plain ``Shared2FCBBoxHead`` (NorCal rescales a softmax over
            classes; EQL/EQLv2's sigmoid heads have none), or the config has no training annotations.
    """
    head = cfg.model.roi_head.bbox_head
    loss_cfg = head.get("loss_cls") or {}
    loss = loss_cfg.get("type", "CrossEntropyLoss")
    if head.get("type") not in NORCAL_HEADS or loss != "CrossEntropyLoss" or loss_cfg.get("use_sigmoid"):
        raise ValueError(
            f"NorCal needs a softmax Shared2FCBBoxHead; this config has {head.get('type')} with {loss}"
        )
    head["type"] = "NorCalBBoxHead"
    head["norcal"] = dict(ann_file=str(training_ann_file(cfg)), gamma=float(gamma), count=count)


def result_types(evaluator) -> list[str]:
    """The result files a test evaluator writes: its ``metric`` (a name or a list) that are result types."""
    metric = evaluator.get("metric", "bbox")
    names = [metric] if isinstance(metric, str) else list(metric)
    kinds = [name for name in names if name in RESULT_TYPES]
    if not kinds:
        raise ValueError(f"test_evaluator.metric {metric!r} names none of {', '.join(RESULT_TYPES)}")
    return kinds


def test(
    config: str | Path,
    checkpoint: str | Path,
    out_prefix: str | Path,
    data_root: str | Path | None = None,
    cfg_options: dict | None = None,
    launcher: str = "none",
    norcal_gamma: float | None = None,
    norcal_count: str = "image",
) -> dict[str, Path]:
    """Write ``{out_prefix}.<kind>.json`` for each result type of the test evaluator; return the paths.

    ``norcal_gamma`` (None: no calibration) applies NorCal with that γ and ``norcal_count``.
    """
    allow_mmengine_checkpoints()
    import_lvis()
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    cfg = load_run_config(config, data_root, cfg_options, split="test")
    if norcal_gamma is not None:
        apply_norcal(cfg, norcal_gamma, norcal_count)
    out_prefix = Path(out_prefix)
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_prefix.parent, prefix=".test-") as tmp:
        kinds = result_types(cfg.test_evaluator)
        cfg.test_evaluator = dict(
            type=cfg.test_evaluator.type,
            ann_file=cfg.test_evaluator.ann_file,
            metric=kinds,
            format_only=True,
            outfile_prefix=os.path.join(tmp, "predictions"),
        )
        cfg.load_from = str(checkpoint)
        cfg.resume = False
        cfg.work_dir = tmp
        prepare_launcher(cfg, launcher)
        runner = build_runner(cfg)
        runner.test()
        written = {}
        if runner.rank == 0:
            for kind in kinds:
                target = Path(f"{out_prefix}.{kind}.json")
                os.replace(os.path.join(tmp, f"predictions.{kind}.json"), target)
                written[kind] = target
    return written


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "test",
        help="run inference and write COCO-style result files",
        description=(
            "Run a checkpoint on the config's test split and write PREFIX.bbox.json (and "
            "PREFIX.segm.json for a config with masks).\n\nExample:\n  eqlv2 test "
            "toy/mask-rcnn_r18_fpn_ce_toy.py --checkpoint "
            "results/toy/baseline/model_final.pth --data-root resources/toy "
            "--out-prefix results/toy/baseline/predictions"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="config file, or a name under the package's configs/")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out-prefix", required=True, help="result files are PREFIX.bbox.json (PREFIX.segm.json)")
    p.add_argument("--data-root", help="dataset folder (annotations/, val2017/)")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    p.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE")
    p.add_argument(
        "--norcal-gamma", type=float, metavar="GAMMA",
        help="NorCal calibration of a softmax box head: foreground scores / n_c^GAMMA, renormalised",
    )  # fmt: skip
    p.add_argument(
        "--norcal-count", choices=["image", "instance"], default="image",
        help="training count n_c for NorCal (default: image, as the reference code)",
    )  # fmt: skip
    p.set_defaults(func=command, verb="test")


def command(args: argparse.Namespace) -> None:
    written = test(
        args.config, args.checkpoint, args.out_prefix, args.data_root, args.cfg_options,
        args.launcher, args.norcal_gamma, args.norcal_count,
    )  # fmt: skip
    for kind, path in written.items():
        print(f"wrote {path} ({kind})")
