"""k-fold cross-validation results: stage ``cv@<model>`` gathers the fold models of
``cv_fold@<model>-<fold>`` (:mod:`audiotag.training.cv`) into

- the out-of-fold scores: every held-out clip scored by the one fold model that never
  trained on it (``clip_id, labels, <class>...``, as ``predictions/<model>.csv``);
- the CV lwlrap: each fold model's lwlrap on its own validation clips, mean and sample sd
  over the folds (the best epoch is chosen on those clips too, as for the single model's
  ``valid_lwlrap``: slightly optimistic), and the out-of-fold lwlrap of all the folds'
  validation clips pooled;
- the fold ensemble: the mean of the fold models' test scores, evaluated like an ensemble
  of models (:mod:`audiotag.evaluation.ensemble`: headline and details metrics, per-class
  table, per-clip test scores), its F1 threshold tuned on the out-of-fold scores of the
  validation clips. Its name is ``<model>_cv``: a row of the report, a column of
  ``audiotag compare``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audiotag.contracts.names import FOLD_JSON, OOF_CSV, PER_CLASS_CSV, TEST_CSV
from audiotag.contracts.predictions import (
    ClipPredictions,
    read_predictions,
    write_predictions_table,
)
from audiotag.contracts.tables import read_clip_table, rounded, write_csv
from audiotag.core.headline import CV_KEYS
from audiotag.core.io import read_json, write_json
from audiotag.evaluation.config import EvaluateConfig
from audiotag.evaluation.ensemble import ensemble_metrics, ensemble_predictions
from audiotag.evaluation.scoring import write_headline

log = logging.getLogger(__name__)


def assemble_oof(tables: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """The folds' out-of-fold tables (``fold: clip_id, labels, <class>...``) as one, fold by
    fold; a clip in two folds, or folds with other columns, is an error naming them."""
    folds = sorted(tables)
    first = tables[folds[0]]
    seen: dict[str, int] = {}
    for fold in folds:
        table = tables[fold]
        if list(table.columns) != list(first.columns):
            raise ValueError(f"cv: fold {fold}'s out-of-fold scores have other columns than "
                             f"fold {folds[0]}'s (another feature store or task?)")
        for clip in table["clip_id"]:
            if clip in seen:
                raise ValueError(f"cv: clip {clip!r} is held out by folds {seen[clip]} and "
                                 f"{fold} (fold models of another cv.k or seed?)")
            seen[clip] = fold
    return pd.concat([tables[f] for f in folds], ignore_index=True)


def _spread(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample sd (None with one value) of the folds' values."""
    if not values:
        return None, None
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return rounded(float(np.mean(values))), rounded(sd)


def _subset(pred: ClipPredictions, keep: np.ndarray) -> ClipPredictions:
    return ClipPredictions(pred.classes, pred.index[keep].reset_index(drop=True),
                           pred.scores[keep], pred.targets[keep], 0.0)


def cv_metrics(summaries: dict[int, dict[str, Any]], oof_path: str | os.PathLike[str],
               test_paths: dict[str, Path], eval_cfg: EvaluateConfig
               ) -> tuple[dict[str, Any], pd.DataFrame, ClipPredictions]:
    """Every metric of the fold ensemble (CV numbers first), its per-class table and its
    test scores."""
    oof = read_predictions(oof_path)
    valid_ids = {c for s in summaries.values() for c in s["valid_clips"]}
    valid = _subset(oof, oof.index["clip_id"].isin(valid_ids).to_numpy())
    test = ensemble_predictions(test_paths, "mean")
    if not (test.targets > 0).any():
        raise ValueError(f"{', '.join(map(str, test_paths.values()))}: no labelled test clip "
                         "to evaluate the fold ensemble on")
    evaluated, per_class = ensemble_metrics(test, valid, eval_cfg)
    per_fold = [s["valid_lwlrap"] for s in summaries.values() if s["valid_lwlrap"] is not None]
    mean, sd = _spread(per_fold)
    metrics: dict[str, Any] = {"cv_lwlrap_mean": mean, "cv_lwlrap_sd": sd,
                               "cv_folds": len(summaries),
                               "oof_lwlrap": evaluated.pop("valid_lwlrap", None)}
    metrics.update(evaluated)
    metrics["folds"] = [{k: v for k, v in s.items() if k != "valid_clips"}
                        for s in summaries.values()]
    metrics["oof_clips"], metrics["oof_valid_clips"] = len(oof), len(valid)
    metrics["members"] = [f"fold {f}" for f in summaries]
    metrics["method"] = "mean"
    return metrics, per_class, test


def evaluate_cv(name: str, model: str, k: int, folds: list[int],
                folds_dir: str | os.PathLike[str], eval_cfg: EvaluateConfig,
                oof_path: str | os.PathLike[str], metrics_path: str | os.PathLike[str],
                details_path: str | os.PathLike[str], plots_dir: str | os.PathLike[str],
                predictions_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Gather ``folds`` (of ``k``) of ``model`` from ``folds_dir/<fold>/`` and write the
    out-of-fold scores, the headline metrics (CV lwlrap mean and sd, then the fold
    ensemble's test lwlrap, as a model's), every metric,
    the per-class CSV and the fold ensemble's test scores. Returns every metric."""
    root = Path(folds_dir)
    summaries, tables = {}, {}
    for fold in folds:
        summary = read_json(root / str(fold) / FOLD_JSON)
        if (summary["model"], summary["fold"], summary["k"]) != (model, fold, k):
            raise ValueError(f"{root / str(fold) / FOLD_JSON}: fold {summary['fold']} of "
                             f"k={summary['k']} of {summary['model']}, not fold {fold} of "
                             f"k={k} of {model}: re-run its cv_fold stage")
        summaries[fold] = summary
        tables[fold] = read_clip_table(root / str(fold) / OOF_CSV)
    write_csv(assemble_oof(tables), oof_path)
    metrics, per_class, test = cv_metrics(
        summaries, oof_path, {f"fold {f}": root / str(f) / TEST_CSV for f in folds}, eval_cfg)
    write_csv(per_class, Path(plots_dir) / PER_CLASS_CSV)
    write_predictions_table(test, test.classes, predictions_path)
    write_json(details_path, metrics)
    write_headline(metrics_path, metrics, CV_KEYS)
    log.info("%s: CV lwlrap %s ± %s over %d folds (out-of-fold %s); fold ensemble test "
             "lwlrap %s", name, metrics["cv_lwlrap_mean"], metrics["cv_lwlrap_sd"],
             len(folds), metrics["oof_lwlrap"], metrics.get("lwlrap"))
    return metrics
