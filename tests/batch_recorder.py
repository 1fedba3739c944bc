"""A test-only mmengine hook: what each rank trained on, iteration by iteration.

Imported by the training configs that ``tests/test_fewer_gpus.py`` writes (``custom_imports``), in the
``eqlv2 train`` processes it starts, so that a 1-process and a 2-process run can be compared.
"""

from __future__ import annotations

from pathlib import Path

import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper


@HOOKS.register_module()
class BatchRecorderHook(Hook):
    """Save ``<work_dir>/batches_rank<r>.pt``: per iteration, the image ids of this rank's batch and EQLv2's
    ``pos_grad``/``neg_grad`` right after it."""

    def before_train(self, runner) -> None:
        self.records: list[dict] = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        loss = model.roi_head.bbox_head.loss_cls
        self.records.append(
            {
                "iter": runner.iter + 1,
                "img_ids": [sample.metainfo["img_id"] for sample in data_batch["data_samples"]],
                "pos_grad": loss.pos_grad.detach().clone(),
                "neg_grad": loss.neg_grad.detach().clone(),
            }
        )

    def after_train(self, runner) -> None:
        torch.save(self.records, Path(runner.work_dir) / f"batches_rank{get_rank()}.pt")
