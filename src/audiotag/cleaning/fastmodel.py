"""Small, fast multi-label models that score labels for cleaning.

``cnn1d``: a 2-D convolution stem shared across mel bands (``stem_channels`` filters,
max-pooled 4x in frequency), then 1-D convolutions over frames (the stem's maps as
channels), global max + mean pooling over time, one linear layer. ``cnn2d``: four blocks
of two 3x3 convolutions over the log-mel image (``channels/2, channels, 2*channels,
4*channels`` wide, 2x2 average pooling after each), mean over frequency, then max + mean
over time and one linear layer: far slower, meant for a GPU (``clean.device``).
``linear``: logistic regression on pooled per-band statistics (mean, std, max over time).
All are trained with BCE, AdamW and a one-cycle schedule; the convolutional ones see the
clips rolled in time by a random amount (events may occur anywhere) and, with
``mix_fraction``, mixtures of two clips.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import torch
from torch import nn

from audiotag.core.config import CleanConfig
from audiotag.training.utils import pick_device

log = logging.getLogger(__name__)

_PREDICT_BATCH = 128
_STEM_FREQ_POOL = 4  # cnn1d stem: mel bands per pooled band


class FastCNN(nn.Module):
    """``(B, n_mels, frames)`` -> logits ``(B, classes)``.

    With ``stem_channels > 0`` a 5x5 2-D convolution of that many filters runs over the
    log-mel image first and is max-pooled 4x in frequency; its maps, stacked, are the 1-D
    convolutions' input channels. The stem's filters are shared across mel bands, so a
    pattern (an amplitude or frequency wobble, a harmonic) learned at one pitch is found
    at every pitch, which the band-specific 1-D convolutions alone cannot do.
    """

    def __init__(self, n_mels: int, num_classes: int, channels: int, dropout: float,
                 stem_channels: int = 0) -> None:
        super().__init__()

        def block(c_in: int, kernel: int) -> list[nn.Module]:
            return [nn.Conv1d(c_in, channels, kernel, padding=kernel // 2),
                    nn.BatchNorm1d(channels), nn.ReLU()]

        self.stem: nn.Module | None = None
        n_in = n_mels
        if stem_channels:
            self.stem = nn.Sequential(
                nn.Conv2d(1, stem_channels, 5, padding=2), nn.BatchNorm2d(stem_channels),
                nn.ReLU(), nn.MaxPool2d((_STEM_FREQ_POOL, 1), ceil_mode=True))
            n_in = stem_channels * -(-n_mels // _STEM_FREQ_POOL)
        self.features = nn.Sequential(*block(n_in, 5), nn.MaxPool1d(2),
                                      *block(channels, 5), nn.MaxPool1d(2), *block(channels, 3))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem is not None:
            x = self.stem(x.unsqueeze(1)).flatten(1, 2)  # (B, stem * bands / 4, frames)
        z = self.features(x)  # (B, channels, frames / 4)
        return self.head(self.dropout(torch.cat([z.amax(-1), z.mean(-1)], dim=1)))


class FastCNN2d(nn.Module):
    """``(B, n_mels, frames)`` -> logits ``(B, classes)``; see the module doc."""

    def __init__(self, num_classes: int, channels: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in (channels // 2, channels, 2 * channels, 4 * channels):
            for c in (c_in, c_out):
                layers += [nn.Conv2d(c, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            layers.append(nn.AvgPool2d(2, ceil_mode=True))  # ceil: few mel bands still work
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.features(x.unsqueeze(1)).mean(2)  # (B, channels, frames / 16)
        return self.head(self.dropout(torch.cat([z.amax(-1), z.mean(-1)], dim=1)))


class PooledLinear(nn.Module):
    """Logistic regression on pooled statistics ``(B, 3 * n_mels)`` (see :func:`pooled_stats`)."""

    def __init__(self, n_stats: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n_stats, affine=False)  # standardise the statistics
        self.head = nn.Linear(n_stats, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(x))


def pooled_stats(x: np.ndarray) -> np.ndarray:
    """Per-band mean, std and max over time: ``(N, n_mels, frames)`` -> ``(N, 3 * n_mels)``."""
    return np.concatenate([x.mean(-1), x.std(-1), x.max(-1)], axis=1).astype(np.float32)


def model_input(x: np.ndarray, cfg: CleanConfig) -> np.ndarray:
    """What the model of ``cfg.model`` reads: the images, or their statistics (computed once)."""
    return pooled_stats(x) if cfg.model == "linear" else x


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the setting.

    These models are too small to gain from threads, and on a busy machine a second
    OpenMP thread that waits for a core makes every step wait (measured: several times
    slower with 2 threads at a load of 10 on 2 cores). It also makes results independent
    of the core count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_model(cfg: CleanConfig, n_inputs: int, num_classes: int) -> nn.Module:
    """``n_inputs``: mel bands (``cnn1d``) or pooled statistics (``linear``)."""
    if cfg.model == "cnn1d":
        return FastCNN(n_inputs, num_classes, cfg.channels, cfg.dropout, cfg.stem_channels)
    if cfg.model == "cnn2d":
        return FastCNN2d(num_classes, cfg.channels, cfg.dropout)
    return PooledLinear(n_inputs, num_classes)


def fit(x: np.ndarray, y: np.ndarray, cfg: CleanConfig, seed: int) -> nn.Module:
    """Train a fresh model on :func:`model_input` ``x`` and targets ``y (N, C)`` on
    ``cfg.device`` (the returned model stays there)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = pick_device(cfg.device, "clean.device")
    model = build_model(cfg, x.shape[1], y.shape[1]).to(device)
    xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y.astype(np.float32)).to(device)
    steps_per_epoch = -(-len(xs) // cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr,
                                                total_steps=cfg.epochs * steps_per_epoch)
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(xs), generator=gen)
        for start in range(0, len(xs), cfg.batch_size):
            idx = order[start:start + cfg.batch_size].to(device)
            if len(idx) < 2:  # BatchNorm needs two clips
                continue
            batch = xs[idx]
            targets = ys[idx]
            if cfg.model != "linear":
                shift = int(torch.randint(0, batch.shape[-1], (1,), generator=gen))
                batch = torch.roll(batch, shift, dims=-1)
                batch, targets = _max_mix(batch, targets, cfg.mix_fraction, gen)
            loss = nn.functional.binary_cross_entropy_with_logits(model(batch), targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def _max_mix(batch: torch.Tensor, targets: torch.Tensor, fraction: float,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace the first ``fraction`` of the batch by mixtures of two clips.

    The images are in dB over the background (:mod:`audiotag.cleaning.fastfeatures`), so
    the element-wise maximum of two is close to the log-mel of the two clips played
    together, and its labels are the union of theirs. The partner is a clip of the batch
    drawn at random (now and then the clip itself), rolled in time by its own amount.
    """
    n = int(round(fraction * len(batch)))
    if n == 0:
        return batch, targets
    partner = torch.randperm(len(batch), generator=gen)[:n].to(batch.device)
    shift = int(torch.randint(0, batch.shape[-1], (1,), generator=gen))
    mixed = torch.maximum(batch[:n], torch.roll(batch[partner], shift, dims=-1))
    union = torch.maximum(targets[:n], targets[partner])
    return torch.cat([mixed, batch[n:]]), torch.cat([union, targets[n:]])


def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Sigmoid probabilities ``(N, C)`` float64."""
    device = next(model.parameters()).device
    with torch.no_grad():
        parts = [torch.sigmoid(model(torch.from_numpy(x[i:i + _PREDICT_BATCH]).to(device)))
                 for i in range(0, len(x), _PREDICT_BATCH)]
    return torch.cat(parts).double().cpu().numpy()


def _fold_proba(x: np.ndarray, y: np.ndarray, held: np.ndarray, cfg: CleanConfig,
                seed: int) -> np.ndarray:
    """Train on the clips not ``held`` and score the ``held`` ones (one thread)."""
    with one_thread():
        model = fit(x[~held], y[~held], cfg, seed)
        return predict_proba(model, x[held])


def fold_workers(cfg: CleanConfig, n_folds: int) -> int:
    """Processes that train folds at once: ``cfg.workers`` (0 = one per CPU core), at most
    one per fold, and 1 when the models train on a GPU (one device is shared anyway)."""
    if pick_device(cfg.device, "clean.device").type != "cpu":
        return 1
    wanted = cfg.workers or os.cpu_count() or 1
    return max(1, min(wanted, n_folds))


def out_of_fold_proba(x: np.ndarray, y: np.ndarray, cfg: CleanConfig, seed: int) -> np.ndarray:
    """Out-of-fold probabilities ``(N, C)``: each clip is scored by a model that never saw it.

    Clips are split into ``cfg.n_folds`` folds by a seeded permutation (sizes differ by at
    most one); ``n_folds`` models are trained, :func:`fold_workers` of them at a time in
    separate processes. Fold ``k`` is seeded with ``seed + k`` and trains on one thread, so
    the result does not depend on the number of workers.
    """
    if len(x) < cfg.n_folds:
        raise ValueError(f"clean.n_folds={cfg.n_folds} exceeds the {len(x)} clips to score")
    folds = np.random.default_rng(seed).permutation(np.arange(len(x)) % cfg.n_folds)
    out = np.zeros(y.shape, dtype=np.float64)
    workers = fold_workers(cfg, cfg.n_folds)
    with contextlib.ExitStack() as stack:
        if workers == 1:
            results = ((k, _fold_proba(x, y, folds == k, cfg, seed + k))
                       for k in range(cfg.n_folds))
        else:
            # spawn, not fork: a forked child inherits torch's OpenMP state, which can deadlock
            pool = stack.enter_context(ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn")))
            jobs = {pool.submit(_fold_proba, x, y, folds == k, cfg, seed + k): k
                    for k in range(cfg.n_folds)}
            results = ((jobs[job], job.result()) for job in as_completed(jobs))
        for done, (k, proba) in enumerate(results, start=1):
            out[folds == k] = proba
            log.info("fold %d done (%d/%d, %d processes): trained on %d clips, scored %d",
                     k + 1, done, cfg.n_folds, workers, int((folds != k).sum()),
                     int((folds == k).sum()))
    return out
