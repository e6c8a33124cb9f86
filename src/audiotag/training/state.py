"""What a training run has done so far: every epoch's record, the best weights, and the
bookkeeping of early stopping (:class:`Progress`), plus every global RNG's state.

With :class:`audiotag.training.optim.Optimisation`'s state it is what
:meth:`audiotag.training.loop.Trainer.state_dict` saves at an epoch boundary, so that a
killed run continues exactly as the uninterrupted one would have
(:mod:`audiotag.training.resume`).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

TASK_PHASES = ("train", "finetune", "swa")  # what is scored on the task (not reconstruct)


@dataclass
class EpochResult:
    epoch: int  # 1-based, counting every phase
    train_loss: float
    valid_loss: float
    valid_lwlrap: float  # NaN when the task has no classes, or in a reconstruction epoch
    lr: float
    grad_norms: dict[str, float] = field(default_factory=dict)  # layer -> mean over steps
    # layer -> mean over steps of |update| / |weights| (1e-3 is the classic healthy value)
    update_ratios: dict[str, float] = field(default_factory=dict)
    valid_accuracy: float = math.nan  # single-label tasks: argmax accuracy
    # train | a model's own phase (the autoencoder's reconstruct) | finetune (curated clips
    # only, after train) | swa (the average)
    phase: str = "train"
    # the learning rate of each optimizer step (``lr`` is the first: a per-step schedule,
    # e.g. one cyclic triangle per epoch, shows only here)
    lr_steps: list[float] = field(default_factory=list)
    # the same metrics on a fixed subset of training clips (``train.train_score_clips``,
    # deterministic crops, eval mode): the gap to valid shows overfitting epoch by epoch
    train_lwlrap: float = math.nan
    train_accuracy: float = math.nan
    seconds: float = math.nan  # wall time of the epoch (training + scoring)

    @property
    def score(self) -> float:
        """What picks the best epoch: valid lwlrap, or minus the valid loss (regression)."""
        if self.phase not in TASK_PHASES:
            return -math.inf
        return self.valid_lwlrap if math.isfinite(self.valid_lwlrap) else -self.valid_loss


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@dataclass
class Progress:
    """The epochs so far, the best one, and early stopping's count (the part of a run's
    state that is not the optimiser's)."""

    history: list[EpochResult] = field(default_factory=list)
    best_score: float = -math.inf
    since_best: int = 0  # task epochs since the best one
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None  # the weights that validated best
    first_state: dict[str, torch.Tensor] | None = None  # after epoch 1 (weight analysis)
    stopped_early: bool = False

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    def count(self, phase: str) -> int:
        return sum(r.phase == phase for r in self.history)

    def record(self, result: EpochResult, weights: torch.nn.Module) -> bool:
        """Append ``result`` (validated with ``weights``); whether it is the best so far."""
        self.history.append(result)
        is_best = result.score > self.best_score
        if result.epoch == 1:
            self.first_state = cpu_state(weights)
        if is_best:
            self.best_score, self.since_best = result.score, 0
            self.best_state, self.best_epoch = cpu_state(weights), result.epoch
        elif result.phase in TASK_PHASES:
            self.since_best += 1
        return is_best

    def state_dict(self) -> dict[str, Any]:
        return {"history": [asdict(r) for r in self.history],
                "best_score": self.best_score, "since_best": self.since_best,
                "best_epoch": self.best_epoch, "best_state": self.best_state,
                "first_state": self.first_state, "stopped_early": self.stopped_early}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [EpochResult(**r) for r in state["history"]]
        self.best_score, self.since_best = state["best_score"], state["since_best"]
        self.best_epoch, self.best_state = state["best_epoch"], state["best_state"]
        self.first_state, self.stopped_early = state["first_state"], state["stopped_early"]


def rng_state() -> dict[str, Any]:
    """Every global RNG as tensors and plain types (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
             "python": [py_version, list(py_state), py_gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
