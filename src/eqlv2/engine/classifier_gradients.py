"""Every method's accumulated per-class positive and negative gradients of the classification logits.

EQLv2 is built on one observation (its Fig. 1): for a rare class the positive gradients its logit
receives are swamped by the negative ones, and the ratio of the two, accumulated over training and sorted
by class frequency, is what EQLv2 drives towards 1.  Its loss keeps these sums itself (``pos_grad``,
``neg_grad``); to draw the figure's baseline curve, and to compare any other method, the same sums are
needed for a softmax cross-entropy, EQL, BAGS, Seesaw, a method of one's own.

What is collected, for class j with logit channel c(j) (channel j, except for BAGS's grouped layout):

    pos_grad_j = sum over RoIs i labelled j      of |dL_i / dz_{i, c(j)}|
    neg_grad_j = sum over RoIs i not labelled j  of |dL_i / dz_{i, c(j)}|

with L_i the method's classification loss of RoI i: the gradient of the loss the head computes, taken
with ``torch.autograd.grad`` right after its forward, times the number of RoIs N and divided by the loss's
``loss_weight``.  For a loss averaged over the RoIs (cross-entropy, EQL, EQLv2, Federated Loss, Seesaw)
that is the per-RoI gradient; for a softmax it is ``1 - p_ij`` on the positives and ``p_ij`` on the
negatives; for EQLv2 it is exactly what its own buffers accumulate (``pos_w (1 - p)``, ``neg_w p``).
BAGS averages each group's cross-entropy over that group's RoIs, so its sums are that loss's gradient
scaled by N, not a per-RoI sum.  The extra backward runs from the loss to the logits only (an element-wise
pass over N x (C + 1) values), under the same graph, and leaves the training gradients untouched.

Under mixed precision the head's logits are float16 or bfloat16.  A gradient taken with respect to them is
rounded to their type: in float16 a negative's ``p / N`` below 6e-8 becomes 0, and the sums of the rare
classes (small by nature) came out a fifth low.  So the loss is handed the logits cast to float32 (a
forward pre-hook), and the gradient is taken with respect to that float32 copy; the losses compute in
float32 anyway, and the training gradient flows through the cast back to the half logits unchanged.

In a distributed run each process adds the sums of its own RoIs and the increments are summed over the
process group at every iteration (as EQLv2 does with its statistics), so every rank holds the totals of
all RoIs seen so far; they travel in the checkpoints, so a resumed run continues them.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.distributed as dist
from mmdet.registry import HOOKS
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor, nn

from eqlv2.io import atomic_write_bytes

CHECKPOINT_KEY = "classifier_gradients"
FILENAME = "classifier_gradients.pt"


def split_by_label(grad: Tensor, labels: Tensor, class_channels: Tensor) -> tuple[Tensor, Tensor]:
    """(pos, neg), each (C,): the absolute gradients of each class's channel, summed over the RoIs of
    that class and over all other RoIs (background included).

    Args:
        grad (Tensor): Per-RoI gradients of the loss with respect to the logits, (N, channels).
        labels (Tensor): RoI labels in ``[0, C]`` (C: background), (N,).
        class_channels (Tensor): The logit channel of each of the C classes, (C,).
    """
    num_classes = class_channels.numel()
    per_class = grad.detach().abs().double()[:, class_channels]  # (N, C)
    foreground = labels < num_classes
    rows = torch.nonzero(foreground).squeeze(1)
    pos = per_class.new_zeros(num_classes).index_add_(0, labels[rows], per_class[rows, labels[rows]])
    return pos, per_class.sum(dim=0) - pos


class ClassifierGradients:
    """The running sums of one classification loss, fed by a forward hook on the loss module."""

    def __init__(self, num_classes: int, class_channels: Tensor | None = None) -> None:
        self.num_classes = num_classes
        self.class_channels = (
            torch.arange(num_classes) if class_channels is None else class_channels[:num_classes].cpu()
        )
        self.pos_grad = torch.zeros(num_classes, dtype=torch.float64)
        self.neg_grad = torch.zeros(num_classes, dtype=torch.float64)
        self._handles: list = []

    def attach(self, loss: nn.Module) -> None:
        """Collect from every forward of ``loss`` that builds a graph (training, not inference)."""
        self._handles = [
            loss.register_forward_pre_hook(_float32_logits, with_kwargs=True),
            loss.register_forward_hook(self._collect, with_kwargs=True),
        ]

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _collect(self, module: nn.Module, args: tuple, kwargs: dict, output) -> None:
        cls_score = args[0] if args else kwargs["cls_score"]
        labels = args[1] if len(args) > 1 else kwargs["labels"]
        if not (torch.is_grad_enabled() and cls_score.requires_grad) or cls_score.size(0) == 0:
            return
        terms = output.values() if isinstance(output, dict) else [output]
        total = sum(t.sum() for t in terms if torch.is_tensor(t) and t.requires_grad)
        (grad,) = torch.autograd.grad(total, cls_score, retain_graph=True)
        per_roi = grad * (cls_score.size(0) / getattr(module, "loss_weight", 1.0))
        pos, neg = split_by_label(per_roi, labels, self.class_channels.to(grad.device))
        increments = torch.stack([pos, neg])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(increments)  # every rank adds the increments of all RoIs of this iteration
        self.pos_grad += increments[0].cpu()
        self.neg_grad += increments[1].cpu()

    def state(self) -> dict:
        return {"num_classes": self.num_classes, "pos_grad": self.pos_grad.clone(),
                "neg_grad": self.neg_grad.clone()}  # fmt: skip

    def load(self, state: dict) -> None:
        if state["num_classes"] != self.num_classes:
            raise ValueError(
                f"the checkpoint's classifier gradients have {state['num_classes']} classes, the model "
                f"{self.num_classes}"
            )
        self.pos_grad = state["pos_grad"].double().clone()
        self.neg_grad = state["neg_grad"].double().clone()


def _float32_logits(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
    """Hand the loss half-precision logits as float32, so that the gradient taken from them is not
    rounded to float16 or bfloat16 (the module docstring says why)."""
    half = (torch.float16, torch.bfloat16)
    if args and torch.is_tensor(args[0]) and args[0].dtype in half:
        return (args[0].float(), *args[1:]), kwargs
    if "cls_score" in kwargs and kwargs["cls_score"].dtype in half:
        return args, {**kwargs, "cls_score": kwargs["cls_score"].float()}
    return None


def _bbox_head(model: nn.Module) -> nn.Module | None:
    if is_model_wrapper(model):
        model = model.module
    roi_head = getattr(model, "roi_head", None)
    head = getattr(roi_head, "bbox_head", None)
    return head if isinstance(head, nn.Module) and hasattr(head, "loss_cls") else None


@HOOKS.register_module()
class ClassifierGradientHook(Hook):
    """Accumulate :class:`ClassifierGradients` of the RoI head's ``loss_cls`` during training and save
    them as ``<work_dir>/classifier_gradients.pt`` at the end: ``iter``, ``loss`` (its type),
    ``num_classes``, ``pos_grad`` and ``neg_grad`` (float64, in label order), summed over all processes.
    The file loads with ``torch.load(..., weights_only=True)``.
    """

    priority = "LOW"

    def __init__(self) -> None:
        self.gradients: ClassifierGradients | None = None
        self._restored: dict | None = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """A resumed run continues the sums it saved (called before ``before_train``)."""
        self._restored = checkpoint.get(CHECKPOINT_KEY)

    def before_train(self, runner) -> None:
        head = _bbox_head(runner.model)
        if head is None:
            raise ValueError("ClassifierGradientHook needs a model with roi_head.bbox_head.loss_cls")
        self.gradients = ClassifierGradients(head.num_classes, getattr(head.loss_cls, "label_channel", None))
        if self._restored is not None:
            self.gradients.load(self._restored)
        self.gradients.attach(head.loss_cls)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.gradients is not None:
            checkpoint[CHECKPOINT_KEY] = self.gradients.state()

    def after_train(self, runner) -> None:
        self.gradients.detach()
        if get_rank() == 0:
            head = _bbox_head(runner.model)
            state = {"iter": runner.iter, "loss": type(head.loss_cls).__name__, **self.gradients.state()}
            path = Path(runner.work_dir) / FILENAME
            atomic_write_bytes(path, _serialise(state))


def _serialise(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()
