"""k-fold cross-validation (params group ``cv``): stage ``cv_fold@<model>-<fold>``.

The clips CV splits (the *pool*) are those that train or validate the single model: the
store's ``train`` clips (with label cleaning's labels and weights) and its ``valid`` clips.
They are split into ``cv.k`` folds by multi-label iterative stratification
(:func:`audiotag.data.split.iterative_stratification`, seeded by ``seed``), each subset
(curated, noisy) on its own, so every fold holds about 1/k of each subset and of each
class. The split does not depend on which folds train (``cv.folds``): adding a fold trains
only its model. The manifest's group columns (``source_id``, ...) are not used, as the
single model's split does not use them either.

Fold ``f``'s model trains with :func:`audiotag.training.run.train_model` (the one trainer)
on the other folds' clips of ``split.train_subsets``, validates (best epoch) on fold
``f``'s clips of ``split.valid_subsets``, is seeded with ``seed + f``, and then scores
every clip of fold ``f`` (its out-of-fold scores) and the test clips.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audiotag.contracts.names import FOLD_JSON, LIVE_DIR, MODEL_DIR, OOF_CSV, TEST_CSV
from audiotag.contracts.predictions import write_predictions_table
from audiotag.contracts.store import read_store_index
from audiotag.core.device import pick_device
from audiotag.core.errors import ParamsError
from audiotag.core.io import write_json
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import CLASSES_NAME, read_classes
from audiotag.data.split import assign_folds
from audiotag.features.store import read_labels, relabel_index
from audiotag.metrics.lwlrap import per_class_lwlrap
from audiotag.training.checkpoint import load_checkpoint
from audiotag.training.config import TrainConfig
from audiotag.training.inference import predict_clips, task_of
from audiotag.training.run import CHECKPOINT_NAME, ClipChoice, train_model

log = logging.getLogger(__name__)
POOL_ROLES = ("train", "valid")  # the store's roles of the clips CV splits


def cv_pool(store: str | os.PathLike[str],
            labels: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """``clip_id, subset, role, labels, weight`` of the clips CV splits, in the store's
    order: the ``train`` clips (with ``labels``, those the labels file lists, with its
    labels and weights) and the ``valid`` clips (their labels, weight 1)."""
    index = read_store_index(store)
    pool = index[index["role"].isin(POOL_ROLES)].reset_index(drop=True)
    if "weight" not in pool:
        pool["weight"] = 1.0
    if labels is not None:
        kept = relabel_index(pool[pool["role"] == "train"], read_labels(labels))
        kept = kept.set_index("clip_id")
        pool = pool[(pool["role"] != "train") | pool["clip_id"].isin(kept.index)]
        pool = pool.reset_index(drop=True)
        train = (pool["role"] == "train").to_numpy()
        ids = pool.loc[train, "clip_id"]
        pool.loc[train, "labels"] = kept.loc[ids, "labels"].to_numpy()
        pool.loc[train, "weight"] = kept.loc[ids, "weight"].to_numpy()
    pool["weight"] = pool["weight"].astype(np.float64)
    return pool[["clip_id", "subset", "role", "labels", "weight"]]


LABEL_COLUMNS = ["clip_id", "labels", "weight"]


def fold_clips(pool: pd.DataFrame, folds: np.ndarray, fold: int,
               split: SplitConfig) -> ClipChoice:
    """Fold ``fold``'s run: the other folds' clips of ``split.train_subsets`` train, its own
    clips of ``split.valid_subsets`` validate."""
    held = folds == fold
    train = pool[~held & pool["subset"].isin(split.train_subsets).to_numpy()]
    valid = pool[held & pool["subset"].isin(split.valid_subsets).to_numpy()]
    if valid.empty:
        raise ParamsError(f"cv fold {fold}: none of its clips is of split.valid_subsets "
                          f"{list(split.valid_subsets)}; its model has no validation clips "
                          "(lower cv.k)")
    if train.empty:
        raise ParamsError(f"cv fold {fold}: no other fold holds clips of "
                          f"split.train_subsets {list(split.train_subsets)}")
    return ClipChoice(POOL_ROLES, train[LABEL_COLUMNS].reset_index(drop=True),
                      valid[LABEL_COLUMNS].reset_index(drop=True))


def run_fold(name: str, model_params: dict[str, Any], store: str | os.PathLike[str],
             out: str | os.PathLike[str], cfg: TrainConfig, split: SplitConfig, k: int,
             fold: int, seed: int,
             labels: str | os.PathLike[str] | None = None,
             timings: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Train fold ``fold`` of ``k`` of model ``name`` and score its held-out clips and the
    test clips. Writes to ``out``: ``model/`` and ``live/`` (:func:`train_model`'s model and
    dvclive directories), ``oof.csv`` (every clip of the fold), ``test.csv`` and
    ``fold.json`` (clip counts, the validation clips and their lwlrap); to ``timings`` (when
    given) the training's wall-clock times. Returns fold.json."""
    if cfg.processes * cfg.nodes > 1:
        raise ParamsError("cv: fold models train in one process (train.processes=1, "
                          "train.nodes=1)")
    store, out = Path(store), Path(out)
    pool = cv_pool(store, labels)
    classes = read_classes(store / CLASSES_NAME)
    folds = assign_folds(pool, classes, k, seed, key="cv.k")
    clips = fold_clips(pool, folds, fold, split)
    log.info("%s fold %d of %d: %d clips train, %d validate, %d held out", name, fold, k,
             len(clips.train), len(clips.valid), int((folds == fold).sum()))
    train_model(name, model_params, store, out / MODEL_DIR, out / LIVE_DIR, cfg, seed + fold,
                clips=clips, timings=timings)
    device = pick_device(cfg.device)
    model, meta = load_checkpoint(out / MODEL_DIR / CHECKPOINT_NAME, device)
    spec, outputs = task_of(meta), meta.outputs
    held = pool[folds == fold][LABEL_COLUMNS].reset_index(drop=True)
    oof = predict_clips(model, store, POOL_ROLES, cfg.batch_size, device, spec, labels=held)
    test = predict_clips(model, store, ("test",), cfg.batch_size, device, spec)
    write_predictions_table(oof, outputs, out / OOF_CSV)
    write_predictions_table(test, outputs, out / TEST_CSV)
    is_valid = oof.index["clip_id"].isin(set(clips.valid["clip_id"])).to_numpy()
    valid_lwlrap = (per_class_lwlrap(oof.targets[is_valid], oof.scores[is_valid, :len(classes)])
                    .overall if spec.n_classes and (oof.targets[is_valid] > 0).any() else None)
    summary = {"model": name, "fold": fold, "k": k, "seed": seed + fold,
               "train_clips": len(clips.train), "held_out_clips": len(held),
               "valid_lwlrap": None if valid_lwlrap is None else round(float(valid_lwlrap), 6),
               "best_epoch": meta.epoch,
               "valid_clips": clips.valid["clip_id"].tolist()}
    write_json(out / FOLD_JSON, summary)
    log.info("%s fold %d: lwlrap %s on its %d validation clips", name, fold,
             summary["valid_lwlrap"], len(clips.valid))
    return summary
