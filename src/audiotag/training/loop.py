"""The epoch loop: one :class:`Trainer` per training run.

A trainer is three parts: the loop (this module: which phase an epoch belongs to, one pass
over the batches, validation, early stopping), :class:`~audiotag.training.optim.Optimisation`
(optimizers, schedules, grad scaler, SWA/EMA averages: how the weights change) and
:class:`~audiotag.training.state.Progress` (the epochs so far and the best weights). The
model declares its phases (:mod:`audiotag.models.phases`); the recipe
(:mod:`audiotag.training.recipe`) fixes the loaders and the :class:`Rules`. Nothing else
steers the loop.

Per step of the task phase: augmentation (signal -> mixup -> SpecAugment) -> forward under
autocast (CUDA + ``train.amp``) -> per-clip task loss (L_soft targets on noisy clips)
weighted per clip -> backward -> gradient norms -> clipping -> optimizer and scheduler
step -> update-to-weight ratios. A phase with a loss of its own (the autoencoder's
reconstruction) steps on that loss, without augmentation or schedule.
:meth:`Trainer.state_dict` captures everything at an epoch boundary, every RNG included,
so a killed run resumed from it continues exactly (see :mod:`audiotag.training.resume`).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from audiotag.features.store import Batch
from audiotag.metrics import lwlrap
from audiotag.metrics.classification import accuracy, single_label_rows
from audiotag.models.layers import eval_frozen
from audiotag.models.phases import Phase, training_phases
from audiotag.training.augment import BatchAugment
from audiotag.training.config import TrainConfig
from audiotag.training.distributed import agree
from audiotag.training.inference import clip_losses, crop_logits, predict
from audiotag.training.optim import Optimisation
from audiotag.training.state import EpochResult, Progress, cpu_state, rng_state, set_rng_state
from audiotag.training.tasks import TaskSpec, make_loss, soft_bootstrap

log = logging.getLogger(__name__)
__all__ = ["EpochResult", "FinalModel", "Loaders", "Rules", "Trainer", "final_model"]


def multilabel_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per clip, averaged over classes: ``(B,)``."""
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets, reduction="none").mean(dim=1)


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * loss) / sum(w)``: a clip of weight 0 counts as if it were dropped."""
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def accuracy_of(scores: np.ndarray, targets: np.ndarray) -> float:
    """Argmax accuracy over the clips with exactly one positive target (NaN: none)."""
    rows = single_label_rows(targets)
    if not rows.any():
        return math.nan
    return accuracy(targets[rows].argmax(axis=1), scores[rows].argmax(axis=1))


@dataclass(frozen=True)
class Loaders:
    """The batches of a run (:class:`~audiotag.features.store.Batch` es)."""

    train: DataLoader  # training clips (``noisy`` set), shuffled or drawn
    valid: DataLoader  # what picks the best epoch and stops early
    score: DataLoader | None = None  # fixed training clips scored per epoch (train lwlrap)
    finetune: DataLoader | None = None  # curated clips (train.finetune_curated_epochs)


@dataclass(frozen=True)
class Rules:
    """How the task phase trains and is judged, fixed by the recipe from the params."""

    augment: BatchAugment | None = None  # None: batches as loaded (train.overfit_batches)
    lsoft_beta: float = 1.0  # L_soft targets on noisy clips (1: the labels as given)
    patience: int | None = None  # epochs without a better score; None: never stop early
    select_on: str = "mean"  # a validation clip's windows: mean | max of their scores


class Trainer:
    """Trains ``model`` through its phases, then ``train.finetune_curated_epochs``.

    ``loader_generator`` drives the training loaders' draws (saved with the state);
    mixup, SpecAugment and signal augmentation draw from a generator seeded ``seed + 1``;
    ``parallel``: the DistributedDataParallel wrapper of ``model``, if any. Call
    :meth:`run` (repeatedly safe: it continues after the last finished epoch).
    """

    def __init__(self, model: torch.nn.Module, spec: TaskSpec, cfg: TrainConfig,
                 device: torch.device, loaders: Loaders, rules: Rules, seed: int,
                 loader_generator: torch.Generator,
                 parallel: torch.nn.Module | None = None) -> None:
        self.model = model.to(device)
        self.net = parallel if parallel is not None else self.model
        self.spec, self.cfg, self.device = spec, cfg, device
        self.loaders, self.rules = loaders, rules
        if cfg.finetune_curated_epochs and loaders.finetune is None:
            raise ValueError("train.finetune_curated_epochs needs a loader of curated clips")
        self.loader_generator = loader_generator
        self.generator = torch.Generator().manual_seed(seed + 1)  # augmentation draws
        self.loss_fn = make_loss(spec)
        self.amp = cfg.amp and device.type == "cuda"
        if cfg.amp and not self.amp:
            log.warning("train.amp: mixed precision needs CUDA; training in float32 on %s",
                        device.type)
        self.phases = training_phases(model)
        self.optim = Optimisation(model, self.phases, cfg, max(len(loaders.train), 1),
                                  self.amp)
        self.progress = Progress()

    # ------------------------------------------------------------------ where we are

    @property
    def history(self) -> list[EpochResult]:
        return self.progress.history

    @property
    def total_epochs(self) -> int:
        """Every phase's epochs (the task's: ``train.epochs``), fine-tuning not counted."""
        return sum(p.epochs for p in self.phases[:-1]) + self.cfg.epochs

    @property
    def main_done(self) -> bool:
        """The phases' epochs are over (run or stopped early)."""
        done = self.progress.epochs_done - self.progress.count("finetune")
        return self.progress.stopped_early or done >= self.total_epochs

    @property
    def finished(self) -> bool:
        return (self.main_done
                and self.progress.count("finetune") >= self.cfg.finetune_curated_epochs)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that validate, are picked and saved: the EMA, or the model."""
        ema = self.optim.ema_model
        return ema.module if ema is not None else self.model

    def phase_of(self, epoch: int) -> tuple[Phase, int]:
        """The phase of 1-based ``epoch`` and the epoch's number within it."""
        first = 0
        for phase in self.phases[:-1]:
            if epoch <= first + phase.epochs:
                return phase, epoch - first
            first += phase.epochs
        return self.phases[-1], epoch - first

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` needs to continue after the last epoch."""
        return {"model": cpu_state(self.model), **self.optim.state_dict(),
                **self.progress.state_dict(), "generator": self.generator.get_state(),
                "loader_generator": self.loader_generator.get_state(), "rng": rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        finetune = self.loaders.finetune
        self.optim.load_state_dict(state, max(len(finetune), 1) if finetune else 1)
        self.progress.load_state_dict(state)
        self.generator.set_state(state["generator"])
        self.loader_generator.set_state(state["loader_generator"])
        set_rng_state(state["rng"])

    # ------------------------------------------------------------------ steps

    def _task_loss(self, b: Batch) -> torch.Tensor:
        with torch.autocast("cuda", enabled=self.amp):
            logits = crop_logits(self.net, b.x, b.lengths)  # (B, K, outputs)
        y = b.y
        if self.rules.lsoft_beta < 1:
            y = soft_bootstrap(y, logits.float().mean(dim=1), b.noisy, self.rules.lsoft_beta,
                               self.spec)
        return weighted_mean(clip_losses(self.net, b.x, y, self.loss_fn, logits), b.w)

    def _own_loss(self, phase: Phase, b: Batch) -> torch.Tensor:
        with torch.autocast("cuda", enabled=self.amp):
            return phase.loss(b.windows()).float()

    def _train_epoch(self, phase: Phase, finetune: bool = False
                     ) -> tuple[float, dict, dict, list[float]]:
        """One pass over the training batches (``finetune``: the curated clips); returns
        the mean weighted loss, per layer the mean gradient norm (before clipping) and
        update-to-weight ratio, and the learning rate of each step."""
        eval_frozen(self.net.train())  # frozen layers (and their batch norms) stay fixed
        loader = self.loaders.finetune if finetune else self.loaders.train
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # DistributedSampler: a new shuffle per epoch
            sampler.set_epoch(self.progress.epochs_done)
        task = phase.loss is None
        augment = self.rules.augment if task else None
        total, seen, steps = 0.0, 0.0, 0
        norm_sums: dict[str, float] = defaultdict(float)
        ratio_sums: dict[str, float] = defaultdict(float)
        lrs: list[float] = []
        for batch in loader:
            b = batch.to(self.device)
            if augment is not None:
                b = augment(b, self.generator)
            # every gradient, not only the optimizer's: a layer that does not train in this
            # phase (the decoder, a frozen encoder) keeps no stale gradient, so the
            # per-layer records below hold only the layers that train
            self.model.zero_grad(set_to_none=True)
            loss = self._task_loss(b) if task else self._own_loss(phase, b)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} (try a lower "
                                         "train.lr or set train.grad_clip_norm)")
            lr, norms, ratios = self.optim.step(loss, self.model, phase)
            lrs.append(lr)
            for layer, norm in norms.items():
                norm_sums[layer] += norm
            for layer, ratio in ratios.items():
                ratio_sums[layer] += ratio
            steps += 1
            weight = float(b.w.sum()) if task else 1.0
            total += loss.item() * weight
            seen += weight
        return (total / max(seen, 1e-12), {k: v / max(steps, 1) for k, v in norm_sums.items()},
                {k: v / max(steps, 1) for k, v in ratio_sums.items()}, lrs)

    def _validate(self, model: torch.nn.Module,
                  loader: DataLoader | None = None) -> tuple[float, float, float]:
        """``(loss, lwlrap, accuracy)`` of ``model`` on ``loader`` (default: validation)."""
        scores, targets, loss = predict(model, loader or self.loaders.valid, self.device,
                                        self.loss_fn, self.spec, self.rules.select_on)
        c = self.spec.n_classes
        if not c:
            return loss, math.nan, math.nan
        truth, class_scores = targets[:, :c], scores[:, :c]
        score = lwlrap(truth, class_scores) if (truth > 0).any() else math.nan
        acc = accuracy_of(class_scores, truth) if self.spec.softmax else math.nan
        return loss, score, acc

    @torch.no_grad()
    def _validate_own(self, phase: Phase) -> float:
        """The mean over validation clips of ``phase``'s own loss."""
        self.model.eval()
        total, n = 0.0, 0
        for batch in self.loaders.valid:
            b = batch.to(self.device)
            total += self._own_loss(phase, b).item() * b.x.shape[0]
            n += b.x.shape[0]
        return total / max(n, 1)

    # ------------------------------------------------------------------ the loop

    def run(self, on_epoch: Callable[[EpochResult, bool], None]) -> list[EpochResult]:
        """Train the remaining epochs; ``on_epoch(result, is_best)`` after each (log and
        persist there)."""
        while not self.finished:
            result, is_best = self.run_epoch()
            on_epoch(result, is_best)
        return self.history

    def _enter(self, phase: Phase, phase_epoch: int, finetune: bool) -> None:
        """What starts with this epoch: fine-tuning, SWA, a phase's frozen parameters."""
        optim, epoch = self.optim, self.progress.epochs_done + 1
        if finetune and optim.finetune_scheduler is None:
            log.info("fine-tuning on curated clips from epoch %d", epoch)
            optim.start_finetune(max(len(self.loaders.finetune), 1))
        if (optim.swa_model is not None and phase.loss is None and optim.swa_lr is None
                and phase_epoch >= self.cfg.swa_start_epoch):
            optim.start_swa()
            log.info("SWA from epoch %d at learning rate %.3g", epoch, optim.swa_lr)
        if phase.frozen is not None:
            for p in phase.frozen():
                p.requires_grad_(False)

    def run_epoch(self) -> tuple[EpochResult, bool]:
        """Train and validate the next epoch; returns its record and whether it is the best
        so far (its weights then kept)."""
        epoch = self.progress.epochs_done + 1
        finetune = self.main_done  # the main epochs are over: curated clips only
        phase, phase_epoch = self.phase_of(epoch)
        self._enter(phase, phase_epoch, finetune)
        lr = self.optim.optimizer_of(phase).param_groups[0]["lr"]
        started = time.perf_counter()
        train_loss, norms, ratios, lrs = self._train_epoch(phase, finetune)
        if phase.loss is not None:
            result = EpochResult(epoch, train_loss, self._validate_own(phase), math.nan, lr,
                                 norms, ratios, phase=phase.name, lr_steps=lrs)
        else:
            if self.optim.swa_model is not None and self.optim.swa_lr is not None:
                self.optim.swa_model.update_parameters(self.model)
            loss, score, acc = self._validate(self.eval_model)  # the same in every process
            result = EpochResult(epoch, train_loss, loss, score, lr, norms, ratios, acc,
                                 phase="finetune" if finetune else "train", lr_steps=lrs)
            if self.loaders.score is not None:
                _, result.train_lwlrap, result.train_accuracy = self._validate(
                    self.eval_model, self.loaders.score)
        result.seconds = time.perf_counter() - started
        is_best = self.progress.record(result, self.eval_model)
        patience = self.rules.patience
        if (patience is not None and phase.loss is None and not finetune
                and self.progress.since_best >= patience):
            self.progress.stopped_early = True
        # DDP: rank 0 decides
        self.progress.stopped_early = agree(self.progress.stopped_early, self.device)
        return result, is_best

    def finish_swa(self) -> EpochResult | None:
        """Recompute the batch-norm statistics of the SWA average on the training data and
        validate it; the averaged weights become the run's final model. None without SWA."""
        if self.optim.swa_model is None or self.optim.swa_lr is None:
            return None
        averaged = self.optim.swa_model.module
        update_batch_norm(averaged, self.loaders.train, self.device)
        loss, score, acc = self._validate(averaged)
        result = EpochResult(self.progress.epochs_done, math.nan, loss, score,
                             self.optim.swa_lr, valid_accuracy=acc, phase="swa")
        self.model.load_state_dict(averaged.state_dict())
        return result


@dataclass(frozen=True)
class FinalModel:
    """The weights a finished run keeps: the best epoch's, or the SWA average."""

    state: dict[str, torch.Tensor]
    record: dict[str, Any]  # epoch, valid_lwlrap, valid_loss (and swa: True)
    best: EpochResult  # the best training epoch (also with SWA)
    swa: EpochResult | None


def final_model(trainer: Trainer, history: list[EpochResult]) -> FinalModel:
    """The best training epoch's weights, or (``train.swa_start_epoch``) the SWA average
    with recomputed batch-norm statistics."""
    swa = trainer.finish_swa()
    best = max((r for r in history if r.phase in ("train", "finetune")),
               key=lambda r: r.score)
    if swa is None:
        return FinalModel(trainer.progress.best_state,
                          {"epoch": best.epoch, "valid_lwlrap": best.valid_lwlrap,
                           "valid_loss": best.valid_loss}, best, None)
    state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    return FinalModel(state, {"epoch": swa.epoch, "valid_lwlrap": swa.valid_lwlrap,
                              "valid_loss": swa.valid_loss, "swa": True}, best, swa)


@torch.no_grad()
def update_batch_norm(model: torch.nn.Module, loader: DataLoader, device: torch.device) -> None:
    """Batch-norm running statistics recomputed as plain averages over ``loader`` (what
    ``torch.optim.swa_utils.update_bn`` does, for our batches, crops and lengths). Batch
    norms of frozen layers (see :func:`eval_frozen`) keep their statistics."""
    was_training = model.training
    eval_frozen(model.train())
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    momenta = {}
    for m in norms:
        m.reset_running_stats()
        momenta[m] = m.momentum
        m.momentum = None  # cumulative average
    if norms:
        for batch in loader:
            b = batch.to(device)
            crop_logits(model, b.x, b.lengths)
    for m in norms:
        m.momentum = momenta[m]
    if was_training:
        eval_frozen(model.train())
    else:
        model.eval()
