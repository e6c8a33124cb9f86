"""The epoch loop: one :class:`Trainer` per training run.

A trainer owns everything that changes while a model trains: the optimizer, the per-step
learning-rate schedule, the AMP grad scaler, the SWA average, the augmentation RNG, the
history and the best weights so far. :meth:`Trainer.state_dict` captures all of it at an
epoch boundary (with every RNG state), so a killed run resumed from it continues exactly
as the uninterrupted run would have (see :mod:`audiotag.training.resume`).

Per step: (mixup) -> (SpecAugment) -> forward under autocast (CUDA + ``train.amp``) ->
per-clip task loss (L_soft targets on noisy clips) weighted per clip -> backward ->
gradient norms -> clipping -> optimizer and scheduler step -> update-to-weight ratios.
Models registered ``two_phase`` (autoencoders) first run ``pretrain_epochs``
reconstruction epochs.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from audiotag.features.store import Batch
from audiotag.metrics import lwlrap
from audiotag.metrics.classification import accuracy, single_label_rows
from audiotag.models.layers import eval_frozen
from audiotag.training.augment import SignalAugment, mix_batch, spec_augment
from audiotag.training.config import TrainConfig
from audiotag.training.distributed import agree
from audiotag.training.inference import clip_losses, crop_logits, predict
from audiotag.training.optim import make_optimizer, make_scheduler
from audiotag.training.tasks import TaskSpec, make_loss, soft_bootstrap
from audiotag.training.utils import grad_norms, update_ratios

log = logging.getLogger(__name__)

def multilabel_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per clip, averaged over classes: ``(B,)``."""
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets, reduction="none").mean(dim=1)


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * loss) / sum(w)``: a clip of weight 0 counts as if it were dropped."""
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


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
    # train | reconstruct (autoencoder phase 1) | finetune (curated clips only, after
    # train) | swa (the average)
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
        if self.phase == "reconstruct":
            return -math.inf
        return self.valid_lwlrap if math.isfinite(self.valid_lwlrap) else -self.valid_loss


def accuracy_of(scores: np.ndarray, targets: np.ndarray) -> float:
    """Argmax accuracy over the clips with exactly one positive target (NaN: none)."""
    rows = single_label_rows(targets)
    if not rows.any():
        return math.nan
    return accuracy(targets[rows].argmax(axis=1), scores[rows].argmax(axis=1))


def _rng_state() -> dict[str, Any]:
    """Every global RNG as tensors and plain types (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
             "python": [py_version, list(py_state), py_gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class Trainer:
    """Trains ``model`` for ``cfg.epochs`` (plus an autoencoder's reconstruction epochs).

    The loaders yield :class:`~audiotag.features.store.Batch` es (``noisy`` set in
    training batches; see :func:`~audiotag.features.store.collate_clips`); ``generator``
    drives mixup and SpecAugment. ``two_phase``: the model's registry entry declares two
    phases (see :class:`audiotag.models.registry.ModelSpec`). Call :meth:`run` (repeatedly
    safe: it continues after the last finished epoch).
    """

    def __init__(self, model: torch.nn.Module, spec: TaskSpec, cfg: TrainConfig,
                 device: torch.device, train_loader: DataLoader, valid_loader: DataLoader,
                 loader_generator: torch.Generator, seed: int, *, two_phase: bool,
                 spectral: bool = True,
                 overfit: bool = False, parallel: torch.nn.Module | None = None,
                 score_loader: DataLoader | None = None,
                 finetune_loader: DataLoader | None = None,
                 signal_augment: SignalAugment | None = None,
                 crop_aggregate: str = "mean") -> None:
        self.model = model.to(device)
        self.net = parallel if parallel is not None else self.model  # DDP wrapper, if any
        self.spec, self.cfg, self.device = spec, cfg, device
        self.train_loader, self.valid_loader = train_loader, valid_loader
        self.score_loader = score_loader  # fixed training clips scored after each epoch
        self.finetune_loader = finetune_loader  # curated clips (finetune_curated_epochs)
        self.signal_augment = signal_augment  # gain / shift / background (train.aug_*)
        self.crop_aggregate = crop_aggregate  # of a clip's windows (features.eval_aggregate)
        if cfg.finetune_curated_epochs and finetune_loader is None:
            raise ValueError("train.finetune_curated_epochs needs a loader of curated clips")
        self.loader_generator = loader_generator
        self.generator = torch.Generator().manual_seed(seed + 1)  # augmentation draws
        self.overfit = overfit
        self.augment = not overfit
        self.spectral = spectral
        self.loss_fn = make_loss(spec)
        self.amp = cfg.amp and device.type == "cuda"
        if cfg.amp and not self.amp:
            log.warning("train.amp: mixed precision needs CUDA; training in float32 on %s",
                        device.type)
        steps = max(len(train_loader), 1)
        self.pretrain_epochs = int(model.cfg.pretrain_epochs) if two_phase else 0
        self.freeze_encoder = bool(self.pretrain_epochs and model.cfg.freeze_encoder)
        params = model.classifier_parameters() if self.freeze_encoder else model.parameters()
        trainable = [p for p in params if p.requires_grad]
        if not trainable:
            raise ValueError("no trainable parameters (everything is frozen)")
        self.optimizer = make_optimizer(trainable, cfg.optimizer, cfg.lr, cfg.weight_decay,
                                        cfg.momentum)
        self.scheduler = make_scheduler(self.optimizer, cfg.scheduler, cfg.epochs, steps,
                                        cfg.warmup_epochs, cfg.cycle_epochs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.swa_model = (torch.optim.swa_utils.AveragedModel(model, use_buffers=False)
                          if cfg.swa else None)
        self.swa_lr: float | None = None
        # train.ema_decay: an EMA of the weights and of the buffers (batch-norm statistics
        # too), updated after every optimizer step; it is what validates, is picked as best
        # epoch and is saved
        self.ema_model = (torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay),
            use_buffers=True) if cfg.ema_decay > 0 else None)
        self.finetune_scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.ae_optimizer = (torch.optim.AdamW(list(model.autoencoder_parameters()),
                                               lr=cfg.lr, weight_decay=cfg.weight_decay)
                             if self.pretrain_epochs else None)
        self.history: list[EpochResult] = []
        self.best_score, self.since_best = -math.inf, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch = 0
        self.first_state: dict[str, torch.Tensor] | None = None
        self.stopped_early = False

    # ------------------------------------------------------------------ state

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + self.cfg.epochs

    @property
    def finetune_done(self) -> int:
        return sum(r.phase == "finetune" for r in self.history)

    @property
    def main_done(self) -> bool:
        """The reconstruction and training epochs are over (run or stopped early)."""
        return (self.stopped_early
                or self.epochs_done - self.finetune_done >= self.total_epochs)

    @property
    def finished(self) -> bool:
        return self.main_done and self.finetune_done >= self.cfg.finetune_curated_epochs

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that validate, are picked and saved: the EMA, or the model."""
        return self.ema_model.module if self.ema_model is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        """Everything :meth:`load_state_dict` needs to continue after the last epoch."""
        return {
            "model": _cpu_state(self.model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ae_optimizer": self.ae_optimizer.state_dict() if self.ae_optimizer else None,
            "swa_model": self.swa_model.state_dict() if self.swa_model else None,
            "swa_lr": self.swa_lr,
            "ema_model": self.ema_model.state_dict() if self.ema_model else None,
            "finetune_scheduler": (self.finetune_scheduler.state_dict()
                                   if self.finetune_scheduler else None),
            "history": [asdict(r) for r in self.history],
            "best_score": self.best_score, "since_best": self.since_best,
            "best_epoch": self.best_epoch, "best_state": self.best_state,
            "first_state": self.first_state, "stopped_early": self.stopped_early,
            "generator": self.generator.get_state(),
            "loader_generator": self.loader_generator.get_state(),
            "rng": _rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if state["finetune_scheduler"] is not None:  # before the optimizer's learning rates
            self._start_finetune()
            self.finetune_scheduler.load_state_dict(state["finetune_scheduler"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema_model is not None and state["ema_model"] is not None:
            self.ema_model.load_state_dict(state["ema_model"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ae_optimizer is not None and state["ae_optimizer"] is not None:
            self.ae_optimizer.load_state_dict(state["ae_optimizer"])
        if self.swa_model is not None and state["swa_model"] is not None:
            self.swa_model.load_state_dict(state["swa_model"])
        self.swa_lr = state["swa_lr"]
        self.history = [EpochResult(**r) for r in state["history"]]
        self.best_score, self.since_best = state["best_score"], state["since_best"]
        self.best_epoch, self.best_state = state["best_epoch"], state["best_state"]
        self.first_state, self.stopped_early = state["first_state"], state["stopped_early"]
        self.generator.set_state(state["generator"])
        self.loader_generator.set_state(state["loader_generator"])
        _set_rng_state(state["rng"])

    # ------------------------------------------------------------------ steps

    def _augment(self, b: Batch) -> Batch:
        if not self.augment:
            return b
        cfg = self.cfg
        if self.signal_augment is not None:  # on the clips' signals, before mixing them
            b = Batch(self.signal_augment(b.x, self.generator), b.y, b.w, b.noisy, b.lengths)
        if cfg.mixup_alpha > 0:
            (x, y, w, noisy), _, perm = mix_batch([b.x, b.y, b.w, b.noisy], cfg.mixup_alpha,
                                                   self.generator)
            lengths = b.lengths
            if perm is not None and lengths is not None:
                lengths = torch.maximum(lengths, lengths[perm.to(lengths.device)])
            b = Batch(x, y, w, noisy, lengths)
        if cfg.spec_augment and self.spectral:
            shape = b.x.shape
            flat = b.x.reshape(-1, shape[-2], shape[-1])  # crops are masked independently
            flat = spec_augment(flat, cfg.specaug_freq_masks, cfg.specaug_freq_width,
                                cfg.specaug_time_masks, cfg.specaug_time_width,
                                self.generator)
            b = Batch(flat.view(shape), b.y, b.w, b.noisy, b.lengths)
        return b

    def _loss(self, b: Batch) -> torch.Tensor:
        with torch.autocast("cuda", enabled=self.amp):
            logits = crop_logits(self.net, b.x, b.lengths)  # (B, K, outputs)
        y = b.y
        if self.augment and self.cfg.lsoft_beta < 1:
            y = soft_bootstrap(y, logits.float().mean(dim=1), b.noisy, self.cfg.lsoft_beta,
                               self.spec)
        return weighted_mean(clip_losses(self.net, b.x, y, self.loss_fn, logits), b.w)

    def _reconstruction_loss(self, b: Batch) -> torch.Tensor:
        x = b.x.flatten(0, 1) if b.x.dim() == 4 else b.x
        with torch.autocast("cuda", enabled=self.amp):
            return self.model.reconstruction_loss(x).float()

    def _train_epoch(self, reconstruct: bool, finetune: bool = False
                     ) -> tuple[float, dict, dict, list[float]]:
        """One pass over the training batches (``finetune``: the curated clips); returns
        the mean weighted loss, per layer the mean gradient norm (before clipping) and
        update-to-weight ratio, and the learning rate of each step."""
        eval_frozen(self.net.train())  # frozen layers (and their batch norms) stay fixed
        loader = self.finetune_loader if finetune else self.train_loader
        scheduler = self.finetune_scheduler if finetune else self.scheduler
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # DistributedSampler: a new shuffle per epoch
            sampler.set_epoch(self.epochs_done)
        optimizer = self.ae_optimizer if reconstruct else self.optimizer
        total, seen, steps = 0.0, 0.0, 0
        norm_sums: dict[str, float] = defaultdict(float)
        ratio_sums: dict[str, float] = defaultdict(float)
        lrs: list[float] = []
        for batch in loader:
            b = batch.to(self.device)
            if not reconstruct:
                b = self._augment(b)
            # every gradient, not only the optimizer's: a layer that does not train in this
            # phase (the decoder, an encoder frozen for phase 2) keeps no stale gradient,
            # so the per-layer records below hold only the layers that train
            self.model.zero_grad(set_to_none=True)
            loss = self._reconstruction_loss(b) if reconstruct else self._loss(b)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} (try a lower "
                                         "train.lr or set train.grad_clip_norm)")
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
            for layer, norm in grad_norms(self.model).items():
                norm_sums[layer] += norm
            if self.cfg.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip_norm)
            before = {n: p.detach().clone() for n, p in self.model.named_parameters()
                      if p.grad is not None}  # the parameters this step updates
            lrs.append(optimizer.param_groups[0]["lr"])
            self.scaler.step(optimizer)
            self.scaler.update()
            if not reconstruct and self.swa_lr is None:
                scheduler.step()  # per step; SWA holds the learning rate instead
            if self.ema_model is not None and not reconstruct:
                self.ema_model.update_parameters(self.model)
            for layer, ratio in update_ratios(self.model, before).items():
                ratio_sums[layer] += ratio
            steps += 1
            weight = 1.0 if reconstruct else float(b.w.sum())
            total += loss.item() * weight
            seen += weight
        return (total / max(seen, 1e-12), {k: v / max(steps, 1) for k, v in norm_sums.items()},
                {k: v / max(steps, 1) for k, v in ratio_sums.items()}, lrs)

    def _validate(self, model: torch.nn.Module,
                  loader: DataLoader | None = None) -> tuple[float, float, float]:
        """``(loss, lwlrap, accuracy)`` of ``model`` on ``loader`` (default: validation)."""
        scores, targets, loss = predict(model, loader or self.valid_loader, self.device,
                                        self.loss_fn, self.spec, self.crop_aggregate)
        c = self.spec.n_classes
        if not c:
            return loss, math.nan, math.nan
        truth, class_scores = targets[:, :c], scores[:, :c]
        score = lwlrap(truth, class_scores) if (truth > 0).any() else math.nan
        acc = accuracy_of(class_scores, truth) if self.spec.softmax else math.nan
        return loss, score, acc

    @torch.no_grad()
    def _validate_reconstruction(self) -> float:
        self.model.eval()
        total, n = 0.0, 0
        for batch in self.valid_loader:
            b = batch.to(self.device)
            total += self._reconstruction_loss(b).item() * b.x.shape[0]
            n += b.x.shape[0]
        return total / max(n, 1)

    def _start_swa(self) -> None:
        self.swa_lr = self.cfg.swa_lr or self.optimizer.param_groups[0]["lr"]
        for group in self.optimizer.param_groups:
            group["lr"] = self.swa_lr
        log.info("SWA from epoch %d at learning rate %.3g", self.epochs_done + 1, self.swa_lr)

    def _start_finetune(self) -> None:
        """``train.finetune_curated_epochs``: a fresh cosine from ``finetune_lr`` (else
        ``lr``) to 0 over those epochs of the curated loader, same optimizer state."""
        lr = self.cfg.finetune_lr or self.cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = lr
        self.finetune_scheduler = make_scheduler(
            self.optimizer, "cosine", self.cfg.finetune_curated_epochs,
            max(len(self.finetune_loader), 1))

    # ------------------------------------------------------------------ the loop

    def run(self, on_epoch: Callable[[EpochResult, bool], None],
            stop_after: int | None = None) -> list[EpochResult]:
        """Train the remaining epochs; ``on_epoch(result, is_best)`` after each (log and
        persist there). ``stop_after``: return after that many epochs in total (tests
        use it to simulate a killed run)."""
        while not self.finished:
            if stop_after is not None and self.epochs_done >= stop_after:
                return self.history
            epoch = self.epochs_done + 1
            finetune = self.main_done  # the main epochs are over: curated clips only
            if finetune and self.finetune_scheduler is None:
                log.info("fine-tuning on curated clips from epoch %d", epoch)
                self._start_finetune()
            reconstruct = epoch <= self.pretrain_epochs
            train_epoch = epoch - self.pretrain_epochs  # 1-based within the training phase
            if (self.swa_model is not None and not reconstruct and self.swa_lr is None
                    and train_epoch >= self.cfg.swa_start_epoch):
                self._start_swa()
            if self.freeze_encoder and not reconstruct:  # phase 2 on a fixed encoder
                for p in self.model.autoencoder_parameters():
                    p.requires_grad_(False)
            optimizer = self.ae_optimizer if reconstruct else self.optimizer
            lr = optimizer.param_groups[0]["lr"]
            started = time.perf_counter()
            train_loss, norms, ratios, lrs = self._train_epoch(reconstruct, finetune)
            if reconstruct:
                result = EpochResult(epoch, train_loss, self._validate_reconstruction(),
                                     math.nan, lr, norms, ratios, phase="reconstruct",
                                     lr_steps=lrs)
            else:
                if self.swa_model is not None and self.swa_lr is not None:
                    self.swa_model.update_parameters(self.model)
                # the same weights in every process
                loss, score, acc = self._validate(self.eval_model)
                result = EpochResult(epoch, train_loss, loss, score, lr, norms, ratios, acc,
                                     phase="finetune" if finetune else "train", lr_steps=lrs)
                if self.score_loader is not None:
                    _, result.train_lwlrap, result.train_accuracy = self._validate(
                        self.eval_model, self.score_loader)
            result.seconds = time.perf_counter() - started
            self.history.append(result)
            is_best = result.score > self.best_score
            if epoch == 1:
                self.first_state = _cpu_state(self.eval_model)
            if is_best:
                self.best_score, self.since_best = result.score, 0
                self.best_state, self.best_epoch = _cpu_state(self.eval_model), epoch
            elif not reconstruct:
                self.since_best += 1
            # early stopping; never with SWA (the average needs its epochs) or overfit_batches
            if (self.swa_model is None and not self.overfit and not reconstruct
                    and not finetune and self.since_best >= self.cfg.patience):
                self.stopped_early = True
            self.stopped_early = agree(self.stopped_early, self.device)  # DDP: rank 0 decides
            on_epoch(result, is_best)
        return self.history

    def finish_swa(self) -> EpochResult | None:
        """Recompute the batch-norm statistics of the SWA average on the training data and
        validate it; the averaged weights become the run's final model. None without SWA."""
        if self.swa_model is None or self.swa_lr is None:
            return None
        averaged = self.swa_model.module
        update_batch_norm(averaged, self.train_loader, self.device)
        loss, score, acc = self._validate(averaged)
        result = EpochResult(self.epochs_done, math.nan, loss, score, self.swa_lr,
                             valid_accuracy=acc, phase="swa")
        self.model.load_state_dict(averaged.state_dict())
        return result


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

