"""The epoch loop: train, validate, keep the best, stop early."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from audiotag.core.config import TrainConfig
from audiotag.metrics import lwlrap
from audiotag.training.utils import grad_norms, update_ratios

# (logits (B, C), targets (B, C)) -> per-clip loss (B,)
ClipLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def multilabel_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per clip, averaged over classes: ``(B,)``."""
    return torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets, reduction="none").mean(dim=1)


def weighted_mean(losses: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * loss) / sum(w)``: a clip of weight 0 counts as if it were dropped."""
    return (losses * weights).sum() / weights.sum().clamp_min(1e-12)


def crop_logits(model: torch.nn.Module, x: torch.Tensor,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``(B, K, C)`` of a batch ``(B, dim, T)`` (K = 1) or ``(B, K, dim, T)``.

    ``lengths`` ``(B,)`` (valid frames of zero-padded variable-length items, from
    :func:`audiotag.features.store.collate_clips`) go to models that declare
    ``accepts_lengths``; other models pool over the padded frames too.
    """
    if lengths is not None and getattr(model, "accepts_lengths", False):
        return model(x, lengths).unsqueeze(1)  # variable-length items are never cropped
    if x.dim() == 4:
        b, k = x.shape[:2]
        return model(x.flatten(0, 1)).view(b, k, -1)
    return model(x).unsqueeze(1)


def clip_losses(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: ClipLoss,
                logits: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Per-clip loss ``(B,)``: the mean over a clip's crops of ``loss_fn`` on each crop (every
    crop carries its clip's labels), so a clip counts once whatever its number of crops."""
    logits = crop_logits(model, x, lengths) if logits is None else logits  # (B, K, C)
    b, k, c = logits.shape
    per_crop = loss_fn(logits.reshape(b * k, c), y.repeat_interleave(k, dim=0))  # (B*K,)
    return per_crop.view(b, k).mean(dim=1)


def _lengths(rest: list, device: torch.device) -> torch.Tensor | None:
    """The optional ``lengths`` after ``(x, y, w)`` in a batch."""
    return rest[0].to(device) if rest else None


@dataclass
class EpochResult:
    epoch: int  # 1-based
    train_loss: float
    valid_loss: float
    valid_lwlrap: float
    lr: float
    grad_norms: dict[str, float] = field(default_factory=dict)  # layer -> mean over steps
    # layer -> mean over steps of |update| / |weights| (1e-3 is the classic healthy value)
    update_ratios: dict[str, float] = field(default_factory=dict)


def train_one_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    loss_fn: ClipLoss, device: torch.device) -> tuple[float, dict, dict]:
    """One pass over ``loader``; returns the mean weighted loss, and per layer the mean
    gradient norm and the mean update-to-weight ratio over the steps."""
    model.train()
    total, seen = 0.0, 0.0
    norm_sums: dict[str, float] = defaultdict(float)
    ratio_sums: dict[str, float] = defaultdict(float)
    steps = 0
    for x, y, w, *rest in loader:
        # (B, dim, frames) or (B, K, dim, frames) with K crops per clip; (B, C) targets;
        # (B,) per-clip loss weights from label cleaning; [(B,) lengths of padded items]
        x, y, w = x.to(device), y.to(device), w.to(device)
        lengths = _lengths(rest, device)
        optimizer.zero_grad(set_to_none=True)
        loss = weighted_mean(clip_losses(model, x, y, loss_fn, lengths=lengths), w)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} (try a lower train.lr)")
        loss.backward()
        for layer, norm in grad_norms(model).items():
            norm_sums[layer] += norm
        before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        optimizer.step()
        for layer, ratio in update_ratios(model, before).items():
            ratio_sums[layer] += ratio
        steps += 1
        total += loss.item() * float(w.sum())
        seen += float(w.sum())
    return (total / max(seen, 1e-12), {k: v / max(steps, 1) for k, v in norm_sums.items()},
            {k: v / max(steps, 1) for k, v in ratio_sums.items()})


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device,
            loss_fn: ClipLoss | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Sigmoid scores ``(N, C)``, targets ``(N, C)`` and the mean (unweighted) loss
    (NaN without loss_fn), one row per clip. Items of ``loader`` are ``(x, y, ...)`` with x
    ``(B, dim, T)``, or ``(B, K, dim, T)`` for K crops per clip: a clip's score is the mean
    of its crops' sigmoid scores, its loss the mean of its crops' losses."""
    model.eval()
    scores, targets, total = [], [], 0.0
    for x, y, *rest in loader:
        x, y = x.to(device), y.to(device)
        lengths = _lengths(rest[1:], device)  # after the loss weights, if the batch has them
        logits = crop_logits(model, x, lengths)  # (B, K, C): K crops of each clip
        if loss_fn is not None:
            total += clip_losses(model, x, y, loss_fn, logits).sum().item()
        scores.append(torch.sigmoid(logits).mean(dim=1).cpu().numpy())  # average crops
        targets.append(y.cpu().numpy())
    if not scores:
        raise ValueError("predict: the loader yielded no clips")
    n = sum(len(s) for s in scores)
    mean_loss = total / max(n, 1) if loss_fn is not None else math.nan
    return np.concatenate(scores), np.concatenate(targets), mean_loss


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    if cfg.scheduler == "cosine":  # decays to ~0 at the last planned epoch
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def fit(model: torch.nn.Module, train_loader: DataLoader, valid_loader: DataLoader,
        cfg: TrainConfig, device: torch.device,
        on_epoch: Callable[[EpochResult, bool], None]) -> list[EpochResult]:
    """Train up to ``cfg.epochs``; stop after ``cfg.patience`` epochs without a better
    validation lwlrap. ``on_epoch(result, is_best)`` logs and checkpoints."""
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(optimizer, cfg)
    loss_fn = multilabel_bce
    history: list[EpochResult] = []
    best, since_best = -math.inf, 0
    for epoch in range(1, cfg.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        train_loss, norms, ratios = train_one_epoch(model, train_loader, optimizer, loss_fn,
                                                    device)
        scheduler.step()
        scores, targets, valid_loss = predict(model, valid_loader, device, loss_fn)
        result = EpochResult(epoch, train_loss, valid_loss, lwlrap(targets, scores), lr, norms,
                             ratios)
        history.append(result)
        is_best = result.valid_lwlrap > best
        if is_best:
            best, since_best = result.valid_lwlrap, 0
        else:
            since_best += 1
        on_epoch(result, is_best)
        if since_best >= cfg.patience:
            break
    return history
