"""Optimizers and per-step learning-rate schedules chosen by name.

Every schedule is a multiplier of the base learning rate as a function of the optimizer
step (``LambdaLR``), so one code path serves all of them, the scheduler is stepped once
per batch, and a schedule can be plotted or tested without training anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

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
