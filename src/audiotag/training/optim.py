"""Optimizers and per-step learning-rate schedules chosen by name, and
:class:`Optimisation`: everything that changes a run's weights.

Every schedule is a multiplier of the base learning rate as a function of the optimizer
step (``LambdaLR``), so one code path serves all of them, the scheduler is stepped once
per batch, and a schedule can be plotted or tested without training anything.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from audiotag.models.phases import Phase
from audiotag.training.config import TrainConfig
from audiotag.training.utils import grad_norms, update_ratios

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("constant", "cosine", "onecycle", "cyclic")


def make_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float,
                   weight_decay: float = 0.0, momentum: float = 0.9) -> torch.optim.Optimizer:
    """``adam`` (L2 penalty in the gradient), ``adamw`` (decoupled decay) or ``sgd`` with
    Nesterov momentum."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=momentum > 0,
                               weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def lr_multiplier(name: str, total_steps: int, warmup_steps: int = 0,
                  cycle_steps: int = 0, min_factor: float = 0.01) -> Callable[[int], float]:
    """``step -> factor`` of the base learning rate.

    constant  1
    cosine    half a cosine from 1 to 0 over the steps after warmup
    onecycle  up from ``min_factor`` to 1 over the first 30% (or the warmup, if longer),
              then half a cosine down to ``min_factor / 100`` (Smith & Topin 2019)
    cyclic    triangular cycles between ``min_factor`` and 1 of ``cycle_steps`` steps
              (Smith 2017), the peak halving every cycle ("triangular2")
    A linear warmup from 0 over ``warmup_steps`` multiplies every schedule but onecycle.
    """
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")
    total = max(total_steps, 1)

    def warmup(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0

    def factor(step: int) -> float:
        if name == "constant":
            return warmup(step)
        if name == "cosine":
            span = max(total - warmup_steps, 1)
            t = min(max(step - warmup_steps, 0) / span, 1.0)
            return warmup(step) * 0.5 * (1 + math.cos(math.pi * t))
        if name == "onecycle":
            rise = max(warmup_steps, int(0.3 * total), 1)
            if step < rise:
                return min_factor + (1 - min_factor) * step / rise
            t = min((step - rise) / max(total - rise, 1), 1.0)
            low = min_factor / 100
            return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * t))
        period = max(cycle_steps, 2)  # cyclic
        cycle, pos = divmod(step, period)
        tri = 1 - abs(2 * pos / period - 1)  # 0 -> 1 -> 0 within a cycle
        return warmup(step) * (min_factor + (1 - min_factor) * tri / 2**cycle)

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int,
                   steps_per_epoch: int, warmup_epochs: float = 0.0,
                   cycle_epochs: float = 2.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step scheduler over ``epochs * steps_per_epoch`` optimizer steps."""
    steps = max(steps_per_epoch, 1)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(
        name, epochs * steps, warmup_steps=round(warmup_epochs * steps),
        cycle_steps=round(cycle_epochs * steps)))


class Optimisation:
    """How a run's weights change: the task phase's optimizer (``train.optimizer``) and
    per-step schedule, a plain AdamW for each phase with a loss of its own (the
    autoencoder's reconstruction), the AMP grad scaler, the SWA and EMA averages and the
    fine-tuning schedule. ``model``'s ``phases`` say what each optimizer updates."""

    def __init__(self, model: torch.nn.Module, phases: list[Phase], cfg: TrainConfig,
                 steps_per_epoch: int, amp: bool) -> None:
        trainable = [p for p in phases[-1].parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("no trainable parameters (everything is frozen)")
        self.cfg = cfg
        self.optimizer = make_optimizer(trainable, cfg.optimizer, cfg.lr, cfg.weight_decay,
                                        cfg.momentum)
        self.scheduler = make_scheduler(self.optimizer, cfg.scheduler, cfg.epochs,
                                        steps_per_epoch, cfg.warmup_epochs, cfg.cycle_epochs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        self.swa_model = AveragedModel(model, use_buffers=False) if cfg.swa else None
        self.swa_lr: float | None = None  # set when SWA starts; it holds the rate constant
        # train.ema_decay: an EMA of the weights and of the buffers (batch-norm statistics
        # too), updated after every optimizer step; it validates, is picked and is saved
        self.ema_model = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(
            cfg.ema_decay), use_buffers=True) if cfg.ema_decay > 0 else None)
        self.finetune_scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.own = {p.name: torch.optim.AdamW(list(p.parameters()), lr=cfg.lr,
                                              weight_decay=cfg.weight_decay)
                    for p in phases if p.loss is not None}

    def optimizer_of(self, phase: Phase) -> torch.optim.Optimizer:
        return self.own[phase.name] if phase.loss is not None else self.optimizer

    def step(self, loss: torch.Tensor, model: torch.nn.Module, phase: Phase
             ) -> tuple[float, dict[str, float], dict[str, float]]:
        """Backward and one update of ``phase``'s optimizer; returns the step's learning
        rate, per layer the gradient norm (before clipping) and update-to-weight ratio."""
        optimizer = self.optimizer_of(phase)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        norms = grad_norms(model)
        if self.cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip_norm)
        before = {n: p.detach().clone() for n, p in model.named_parameters()
                  if p.grad is not None}  # the parameters this step updates
        lr = optimizer.param_groups[0]["lr"]
        self.scaler.step(optimizer)
        self.scaler.update()
        if phase.loss is None:  # the task: schedule and averages follow every step
            if self.swa_lr is None:  # SWA holds the rate instead
                fine = self.finetune_scheduler
                (fine if fine is not None else self.scheduler).step()
            if self.ema_model is not None:
                self.ema_model.update_parameters(model)
        return lr, norms, update_ratios(model, before)

    def start_swa(self) -> None:
        self.swa_lr = self.cfg.swa_lr or self.optimizer.param_groups[0]["lr"]
        for group in self.optimizer.param_groups:
            group["lr"] = self.swa_lr

    def start_finetune(self, steps_per_epoch: int) -> None:
        """``train.finetune_curated_epochs``: a fresh cosine from ``finetune_lr`` (else
        ``lr``) to 0 over those epochs, same optimizer state."""
        lr = self.cfg.finetune_lr or self.cfg.lr
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = lr
        self.finetune_scheduler = make_scheduler(
            self.optimizer, "cosine", self.cfg.finetune_curated_epochs, steps_per_epoch)

    def state_dict(self) -> dict[str, Any]:
        def state(part: Any) -> Any:
            return part.state_dict() if part is not None else None
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "own_optimizers": {name: o.state_dict() for name, o in self.own.items()},
                "swa_model": state(self.swa_model), "swa_lr": self.swa_lr,
                "ema_model": state(self.ema_model),
                "finetune_scheduler": state(self.finetune_scheduler)}

    def load_state_dict(self, state: dict[str, Any], finetune_steps: int) -> None:
        if state["finetune_scheduler"] is not None:  # before the optimizer's learning rates
            self.start_finetune(finetune_steps)
            self.finetune_scheduler.load_state_dict(state["finetune_scheduler"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema_model is not None and state["ema_model"] is not None:
            self.ema_model.load_state_dict(state["ema_model"])
        self.scaler.load_state_dict(state["scaler"])
        for name, saved in state["own_optimizers"].items():
            self.own[name].load_state_dict(saved)
        if self.swa_model is not None and state["swa_model"] is not None:
            self.swa_model.load_state_dict(state["swa_model"])
        self.swa_lr = state["swa_lr"]
