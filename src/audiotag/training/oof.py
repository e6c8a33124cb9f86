"""Predictions of models trained like ``train@<model>`` on some training clips for others:
label cleaning's detector (out-of-fold probabilities, or a curated-only model).

The same :class:`~audiotag.training.loop.Trainer`, feature store, crops, augmentation and
validation-based choice of the best epoch as the ``train`` stage; nothing is written.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Sampler, SubsetRandomSampler

from audiotag.core.device import pick_device, set_threads
from audiotag.core.errors import ParamsError
from audiotag.features.crops import CropSeedSampler
from audiotag.features.store import FeatureSet, collate_clips
from audiotag.models import MODELS, create_model
from audiotag.training.config import TrainConfig
from audiotag.training.inference import predict
from audiotag.training.loop import Trainer
from audiotag.training.run import describe_task
from audiotag.training.utils import seed_everything

log = logging.getLogger(__name__)

MAX_SCORE_CROPS = 4  # windows per scored clip at most (labels describe the whole clip)


class _RowSampler(Sampler[int]):
    def __init__(self, rows: np.ndarray) -> None:
        self.rows = [int(r) for r in rows]

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def score_crops(data: FeatureSet) -> int:
    """Windows per scored clip: enough to cover the longest clip, at most MAX_SCORE_CROPS."""
    if data.config.beat_sync or not len(data):
        return 1
    longest = int(data.index["length"].max())
    return max(1, min(MAX_SCORE_CROPS, math.ceil(longest / max(data.window, 1))))


def fit_predict(store: str | os.PathLike[str], name: str, model_params: dict[str, Any],
                cfg: TrainConfig, seed: int, train_rows: np.ndarray,
                score_rows: np.ndarray,
                device_key: str = "clean.detector.train.device",
                crop_aggregate: str = "mean") -> np.ndarray:
    """Train ``name`` on the store's training clips at positions ``train_rows`` (in the
    order of ``FeatureSet(store, ("train",))``), keep the epoch with the best validation
    score, and return its class probabilities ``(len(score_rows), C)`` float64 for the
    training clips at ``score_rows`` (over :func:`score_crops` windows, their mean or, with
    ``crop_aggregate="max"``, their maximum: a sound in one window is present in the clip)."""
    store = Path(store)
    set_threads(cfg.threads)
    generator = seed_everything(seed)
    train_set = FeatureSet(store, ("train",), train=True, with_noisy=True)
    valid_set = FeatureSet(store, ("valid",))
    if len(valid_set) == 0:
        raise ValueError(f"{store}: no validation clips: the detector picks its best epoch "
                         "on them (check the split params)")
    spec = describe_task(cfg, train_set)
    if spec.n_classes == 0 or spec.n_targets:
        raise ParamsError(f"clean.method: label cleaning needs a classification task; the "
                          f"detector's task is {spec.task}")
    for data in (train_set, valid_set):
        data.select_outputs(True, [])
    if cfg.noisy_weight != 1.0:
        train_set.weights = train_set.weights * np.where(
            train_set.is_noisy > 0, np.float32(cfg.noisy_weight), np.float32(1.0))
    sampler = CropSeedSampler(SubsetRandomSampler([int(r) for r in train_rows],
                                                  generator=generator), generator)
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler,
                              collate_fn=collate_clips,
                              drop_last=len(train_rows) > cfg.batch_size)  # BatchNorm: > 1
    valid_loader = DataLoader(valid_set, batch_size=cfg.batch_size, collate_fn=collate_clips)
    device = pick_device(cfg.device, device_key)
    model = create_model(name, num_classes=spec.n_outputs, n_mels=train_set.n_mels,
                         **model_params)
    trainer = Trainer(model, spec, cfg, device, train_loader, valid_loader, generator, seed,
                      two_phase=MODELS.get(name).two_phase, spectral=train_set.kind != "waveform")
    started = time.perf_counter()
    history = trainer.run(lambda result, is_best: None)
    if trainer.finish_swa() is None and trainer.best_state is not None:
        trainer.model.load_state_dict(trainer.best_state)
    scored = FeatureSet(store, ("train",))
    scored.n_crops = score_crops(scored)
    scored.select_outputs(True, [])
    loader = DataLoader(scored, batch_size=cfg.batch_size, collate_fn=collate_clips,
                        sampler=_RowSampler(score_rows))
    proba, _, _ = predict(trainer.model, loader, device, spec=spec,
                          crop_aggregate=crop_aggregate)
    log.info("%s: trained on %d clips (%d epochs, best %d, valid lwlrap %.4f) in %.1f s, "
             "scored %d clips", name, len(train_rows), len(history), trainer.best_epoch,
             trainer.best_score, time.perf_counter() - started, len(score_rows))
    return proba.astype(np.float64)


def out_of_fold_proba(store: str | os.PathLike[str], name: str, model_params: dict[str, Any],
                      cfg: TrainConfig, seed: int, n_folds: int,
                      crop_aggregate: str = "mean") -> np.ndarray:
    """Probabilities ``(N, C)`` of every training clip of the store (``FeatureSet(store,
    ("train",))`` order), each from a model that never saw it: a seeded permutation splits
    the clips into ``n_folds`` folds (sizes differ by at most one); fold ``k``'s model is
    seeded with ``seed + k``."""
    n = len(FeatureSet(store, ("train",)))
    if n < n_folds:
        raise ValueError(f"clean.detector.n_folds={n_folds} exceeds the {n} training clips "
                         "to score")
    folds = np.random.default_rng(seed).permutation(np.arange(n) % n_folds)
    out: np.ndarray | None = None
    for k in range(n_folds):
        held = np.flatnonzero(folds == k)
        proba = fit_predict(store, name, model_params, cfg, seed + k,
                            np.flatnonzero(folds != k), held, crop_aggregate=crop_aggregate)
        if out is None:
            out = np.zeros((n, proba.shape[1]), dtype=np.float64)
        out[held] = proba
        log.info("fold %d of %d done", k + 1, n_folds)
    assert out is not None
    return out
