"""Predictions of models trained by the one recipe (:mod:`audiotag.training.recipe`) on
some training clips for others: label cleaning's detector (out-of-fold probabilities, or a
curated-only model).

The detector's run is ``train@<model>``'s recipe on some of the store's ``train`` clips
(``StoreClips(rows=...)``) and nothing else (the same assembly, windows, aggregation and
best-epoch rule). Its folds are ``cv``'s iterative stratification
(:func:`audiotag.data.split.assign_folds`, called by :mod:`audiotag.cleaning.detect`);
nothing is written.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Sampler

from audiotag.core.device import pick_device, set_threads
from audiotag.core.errors import ParamsError
from audiotag.features.store import FeatureSet, collate_clips
from audiotag.training.config import TrainConfig
from audiotag.training.distributed import Context
from audiotag.training.inference import predict
from audiotag.training.loop import final_model
from audiotag.training.recipe import Recipe, StoreClips, build_run, outputs_of

log = logging.getLogger(__name__)

MAX_SCORE_CROPS = 4  # windows per scored clip at most (labels describe the whole clip)


class _RowSampler(Sampler[int]):
    def __init__(self, rows: np.ndarray) -> None:
        self.rows = [int(r) for r in rows]

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def score_crops(store: str | os.PathLike[str]) -> int:
    """Windows per scored clip: enough to cover the longest training clip, at most
    MAX_SCORE_CROPS."""
    data = FeatureSet(store, ("train",))
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
    unhonoured = [key for key, off in (("train_score_clips", 0), ("overfit_batches", 0),
                                       ("init_from", None), ("processes", 1), ("nodes", 1))
                  if getattr(cfg, key) != off]
    if unhonoured:  # what clean.detector.train refuses (audiotag.cleaning.config)
        raise ValueError(f"the detector's run cannot honour train.{unhonoured[0]}="
                         f"{getattr(cfg, unhonoured[0])!r}")
    store = Path(store)
    set_threads(cfg.threads)
    device = pick_device(cfg.device, device_key)
    recipe = Recipe(name, model_params, store, cfg, seed,
                    StoreClips(rows=tuple(int(r) for r in train_rows)))
    built = build_run(recipe, Context(), device)
    spec, trainer = built.spec, built.trainer
    if spec.n_classes == 0 or spec.n_targets:
        raise ParamsError(f"clean.method: label cleaning needs a classification task; the "
                          f"detector's task is {spec.task}")
    started = time.perf_counter()
    history = trainer.run(lambda result, is_best: None)
    trainer.model.load_state_dict(final_model(trainer, history).state)
    scored = FeatureSet(store, ("train",), crops=score_crops(store), outputs=outputs_of(spec))
    loader = DataLoader(scored, batch_size=cfg.batch_size, collate_fn=collate_clips,
                        sampler=_RowSampler(score_rows))
    proba, _, _ = predict(trainer.model, loader, device, spec=spec,
                          crop_aggregate=crop_aggregate)
    log.info("%s: trained on %d clips (%d epochs, best %d, valid lwlrap %.4f) in %.1f s, "
             "scored %d clips", name, len(train_rows), len(history),
             trainer.progress.best_epoch, trainer.progress.best_score,
             time.perf_counter() - started, len(score_rows))
    return proba.astype(np.float64)


def out_of_fold_proba(store: str | os.PathLike[str], name: str, model_params: dict[str, Any],
                      cfg: TrainConfig, seed: int, folds: np.ndarray,
                      crop_aggregate: str = "mean") -> np.ndarray:
    """Probabilities ``(N, C)`` of every training clip of the store (``FeatureSet(store,
    ("train",))`` order), each from a model that never saw it: ``folds`` gives each clip's
    fold (:func:`audiotag.data.split.assign_folds`); fold ``k``'s model is seeded with
    ``seed + k``."""
    n = len(folds)
    out: np.ndarray | None = None
    n_folds = int(folds.max()) + 1
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
