"""Training tasks: how model outputs, targets and the per-clip loss fit together.

One switch (``train.task``) instead of four copied code paths. Every task maps
``(outputs (B, K), targets (B, K))`` to a per-clip loss ``(B,)``, which the training loop
weights per clip (label-cleaning weights) and averages.

Output / target layout (K columns):

    multilabel   C class logits        | multi-hot targets       | BCE, mean over classes
    singlelabel  C class logits        | one-hot targets         | softmax cross-entropy
    regression   R regression outputs  | R numeric targets       | MSE over known targets
    multitask    C logits, then R      | C class, then R targets | BCE (or CE) + w * MSE

Regression targets are the manifest's ``targets_*`` columns in column order; an unknown
target (NaN) is left out of the loss rather than treated as zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812  (torch's own convention)

Task = Literal["multilabel", "singlelabel", "regression", "multitask"]
TASKS: tuple[str, ...] = ("multilabel", "singlelabel", "regression", "multitask")
ClipLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TaskSpec:
    """A task and its output layout: ``n_classes`` logits, then ``n_targets`` regressions."""

    task: str
    n_classes: int
    n_targets: int = 0
    label_smoothing: float = 0.0  # singlelabel (and multitask with single_label) only
    regression_weight: float = 1.0  # multitask: weight of the regression loss
    single_label: bool = False  # multitask: classes are one-of-C (softmax) not multi-hot
    targets: tuple[str, ...] = ()  # the targets_* columns of the regression outputs (if known)
    target_weights: tuple[float, ...] = ()  # per target, scales its squared error; (): all 1
    loss: str = "bce"  # classification loss: bce (BCE / softmax CE) | focal
    focal_gamma: float = 0.0  # loss=focal: the focusing exponent
    pos_weight: tuple[float, ...] = ()  # sigmoid outputs: per class, weight of positives

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        needs_classes = self.task in ("multilabel", "singlelabel", "multitask")
        needs_targets = self.task in ("regression", "multitask")
        if needs_classes and self.n_classes < 1:
            raise ValueError(f"task {self.task} needs at least one class")
        if needs_targets and self.n_targets < 1:
            raise ValueError(f"task {self.task} needs targets_* columns in the manifest "
                             "(regression targets); the dataset has none")
        if not needs_targets and self.n_targets:
            raise ValueError(f"task {self.task} takes no regression targets")
        if self.task == "regression" and self.n_classes:
            raise ValueError("task regression has no class outputs")
        if self.targets and len(self.targets) != self.n_targets:
            raise ValueError(f"{self.n_targets} regression outputs, {len(self.targets)} names")
        if self.loss not in ("bce", "focal"):
            raise ValueError(f"unknown loss {self.loss!r}; known: bce, focal")
        if self.pos_weight and (self.softmax or len(self.pos_weight) != self.n_classes):
            raise ValueError("pos_weight: one weight per class, for sigmoid (multi-label) "
                             "outputs only")
        if self.target_weights and len(self.target_weights) != self.n_targets:
            raise ValueError(f"target_weights: {len(self.target_weights)} weights for "
                             f"{self.n_targets} regression targets")

    @property
    def n_outputs(self) -> int:
        return self.n_classes + self.n_targets

    @property
    def softmax(self) -> bool:
        """Class scores are a softmax over classes (else independent sigmoids)."""
        return self.task == "singlelabel" or (self.task == "multitask" and self.single_label)


def masked_mse(pred: torch.Tensor, target: torch.Tensor,
               weights: tuple[float, ...] = ()) -> torch.Tensor:
    """Per-clip mean squared error over the known (non-NaN) targets: ``(B,)``; with
    ``weights`` (one per target) each squared error is scaled by its target's weight.

    A clip with no known target contributes 0.
    """
    known = ~torch.isnan(target)
    diff = torch.where(known, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    squared = diff.pow(2)
    if weights:
        squared = squared * torch.tensor(weights, dtype=squared.dtype, device=squared.device)
    return squared.sum(dim=1) / known.sum(dim=1).clamp_min(1)


def class_loss(logits: torch.Tensor, targets: torch.Tensor, softmax: bool,
               label_smoothing: float = 0.0, focal_gamma: float = 0.0,
               pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-clip classification loss ``(B,)``: softmax CE against (possibly mixed or
    smoothed) target distributions, or BCE averaged over classes.

    ``focal_gamma > 0``: the focal loss (Lin et al. 2017), each term scaled by
    ``(1 - p_t) ** gamma``. It takes soft targets (mixup, label smoothing, L_soft): for
    BCE ``p_t = p * t + (1 - p) * (1 - t)``, for softmax CE ``-sum_c t_c (1 - p_c)^gamma
    log p_c``; ``gamma = 0`` is the plain loss. ``pos_weight`` ``(C,)`` (sigmoid only)
    multiplies the positive term of each class's BCE.
    """
    if softmax:
        if not focal_gamma:
            return F.cross_entropy(logits, targets, label_smoothing=label_smoothing,
                                   reduction="none")
        c = logits.shape[1]
        t = targets * (1 - label_smoothing) + label_smoothing / c  # as cross_entropy smooths
        log_p = F.log_softmax(logits, dim=1)
        return -(t * (1 - log_p.exp()).pow(focal_gamma) * log_p).sum(dim=1)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none",
                                             pos_weight=pos_weight)
    if focal_gamma:
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        bce = bce * (1 - p_t).pow(focal_gamma)
    return bce.mean(dim=1)


def make_loss(spec: TaskSpec) -> ClipLoss:
    """The per-clip loss ``(outputs (B, K), targets (B, K)) -> (B,)`` of a task."""
    c = spec.n_classes
    gamma = spec.focal_gamma if spec.loss == "focal" else 0.0
    pos_weight = torch.tensor(spec.pos_weight) if spec.pos_weight else None

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if outputs.shape != targets.shape or outputs.shape[1] != spec.n_outputs:
            raise ValueError(f"task {spec.task}: outputs {tuple(outputs.shape)} and targets "
                             f"{tuple(targets.shape)} must both be (batch, {spec.n_outputs})")
        total = torch.zeros(outputs.shape[0], device=outputs.device)
        if c:
            total = total + class_loss(outputs[:, :c], targets[:, :c], spec.softmax,
                                       spec.label_smoothing, gamma,
                                       pos_weight.to(outputs.device)
                                       if pos_weight is not None else None)
        if spec.n_targets:
            weight = spec.regression_weight if c else 1.0
            total = total + weight * masked_mse(outputs[:, c:], targets[:, c:],
                                                spec.target_weights)
        return total

    return loss


def class_scores(outputs: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    """Class scores in [0, 1] from model outputs: softmax or sigmoid of the class logits."""
    logits = outputs[:, :spec.n_classes]
    return logits.softmax(dim=1) if spec.softmax else torch.sigmoid(logits)


def resolve_task(task: str, label_counts: list[int], target_columns: list[str]) -> str:
    """The task ``train.task: auto`` means for a training set: ``singlelabel`` when every
    training clip has exactly one label (FSDD, ESC-50, GTZAN, FMA genre), else
    ``multilabel``. Explicit tasks are returned as they are.

    ``label_counts``: labels per training clip; ``target_columns``: the ``targets_*``
    columns (only checked for the regression tasks, by :class:`TaskSpec`).
    """
    if task != "auto":
        return task
    return "singlelabel" if label_counts and all(n == 1 for n in label_counts) else "multilabel"


def task_spec(task: str, n_classes: int, target_columns: list[str],
              label_smoothing: float = 0.0, regression_weight: float = 1.0,
              single_label: bool = False,
              target_weights: tuple[float, ...] = (), loss: str = "bce",
              focal_gamma: float = 0.0, pos_weight: tuple[float, ...] = ()) -> TaskSpec:
    """The :class:`TaskSpec` of a resolved ``task`` on a dataset with ``n_classes`` classes
    and regression columns ``target_columns`` (those the model learns, in output order)."""
    uses_classes = task != "regression"
    uses_targets = task in ("regression", "multitask")
    return TaskSpec(task=task, n_classes=n_classes if uses_classes else 0,
                    n_targets=len(target_columns) if uses_targets else 0,
                    label_smoothing=label_smoothing, regression_weight=regression_weight,
                    single_label=single_label,
                    targets=tuple(target_columns) if uses_targets else (),
                    target_weights=tuple(target_weights) if uses_targets else (),
                    loss=loss, focal_gamma=focal_gamma,
                    pos_weight=tuple(pos_weight) if uses_classes else ())


def balanced_pos_weight(targets: np.ndarray, clip: float) -> tuple[float, ...]:
    """``pos_weight: balanced``: per class, negatives / positives among the training clips'
    targets ``(N, C)`` (multi-hot), at most ``clip`` (also for a class with no positive)."""
    positives = (np.asarray(targets) > 0).sum(axis=0).astype(np.float64)
    negatives = len(targets) - positives
    ratio = np.divide(negatives, positives, out=np.full_like(positives, np.inf),
                      where=positives > 0)
    return tuple(float(v) for v in np.minimum(ratio, clip))


def output_scores(outputs: torch.Tensor, spec: TaskSpec) -> torch.Tensor:
    """What a model's outputs mean, column by column: class scores in [0, 1] (softmax or
    sigmoid), then the raw regression outputs."""
    if not spec.n_classes:
        return outputs
    return torch.cat([class_scores(outputs, spec), outputs[:, spec.n_classes:]], dim=1)


def soft_bootstrap(targets: torch.Tensor, logits: torch.Tensor, noisy: torch.Tensor,
                   beta: float, spec: TaskSpec) -> torch.Tensor:
    """L_soft targets (Reed et al. 2015, used on FSDKaggle2019's noisy set by its winners):
    on noisy clips the class targets become ``beta * y + (1 - beta) * p`` with ``p`` the
    model's own (detached) class scores; curated clips (``noisy`` 0) keep ``y``.

    ``noisy`` ``(B,)`` may be fractional after mixup (then the blend is pro rata).
    """
    c = spec.n_classes
    if beta >= 1 or not c:
        return targets
    p = class_scores(logits.detach(), spec)
    share = (1 - beta) * noisy.to(targets.dtype).unsqueeze(1)  # (B, 1)
    soft = targets[:, :c] + share * (p - targets[:, :c])
    return torch.cat([soft, targets[:, c:]], dim=1)
