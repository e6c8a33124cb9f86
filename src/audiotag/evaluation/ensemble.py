"""Ensembles across models: stage ``ensemble@<name>`` averages the per-clip scores that
``evaluate@<model>`` wrote for the ensemble's member models and evaluates the average like
a model (the same headline and details files, per-class table and per-clip predictions).

Methods (``ensembles.<name>.method``), per clip and class over the M members:

- ``mean``: the arithmetic mean of the scores;
- ``geometric``: the geometric mean (``exp`` of the mean log score, scores floored at
  :data:`EPS`): one member's confident "no" weighs more than in the mean;
- ``rank``: each member's scores of a class replaced by their ranks over the clips
  (``scipy.stats.rankdata``, ties averaged), divided by the number of clips, then averaged:
  members whose scores are scaled differently count alike; the result ranks the clips of a
  class, not the classes of a clip on a common scale.

The micro-F1 threshold is tuned on the validation clips' averaged scores, as evaluation
does for a model (``predictions/valid/<model>.csv``; the rank of a validation clip is
taken among the validation clips). Only class scores are averaged (regression outputs,
``targets_*`` columns, are left out). Members must have scored the same clips, with the
same labels, and the same classes in the same order.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from audiotag.contracts.names import PER_CLASS_CSV
from audiotag.contracts.predictions import (
    ClipPredictions,
    read_predictions,
    write_predictions_table,
)
from audiotag.contracts.tables import rounded, write_csv
from audiotag.core.headline import ENSEMBLE_KEYS
from audiotag.core.io import write_json
from audiotag.evaluation.config import EvaluateConfig
from audiotag.evaluation.scoring import (
    lwlrap_ci,
    multilabel_metrics,
    per_class_list,
    singlelabel_metrics,
    write_headline,
)
from audiotag.metrics.lwlrap import per_class_lwlrap

log = logging.getLogger(__name__)
EPS = 1e-7  # floor of a score before its log (geometric mean)


def check_same_clips(members: dict[str, ClipPredictions], paths: dict[str, Any]) -> None:
    """Refuse members whose clips (ids, order, labels) or classes differ from the first's."""
    first, *others = members
    ref = members[first]
    for name in others:
        pred, where = members[name], f"{paths[name]} (vs {paths[first]})"
        if pred.classes != ref.classes:
            raise ValueError(f"{where}: classes differ: {pred.classes} vs {ref.classes}; "
                             "an ensemble needs models trained on the same classes")
        if pred.clip_ids != ref.clip_ids:
            raise ValueError(f"{where}: the clips differ ({len(pred)} vs {len(ref)} rows, or "
                             "another order); an ensemble needs the same feature store")
        if not pred.index["labels"].equals(ref.index["labels"]):
            raise ValueError(f"{where}: the same clips have different labels")


def combine(scores: list[np.ndarray], method: str) -> np.ndarray:
    """``(clips, classes)`` ensemble scores of the members' ``(clips, classes)`` scores."""
    stack = np.stack(scores).astype(np.float64)  # (members, clips, classes)
    if method == "mean":
        return stack.mean(axis=0)
    if method == "geometric":
        return np.exp(np.log(np.clip(stack, EPS, None)).mean(axis=0))
    if method == "rank":  # each member's ranks of the clips within a class, in (0, 1]
        if stack.shape[1] == 0:
            return stack.mean(axis=0)
        return (rankdata(stack, axis=1) / stack.shape[1]).mean(axis=0)
    raise ValueError(f"unknown ensemble method {method!r}")


def ensemble_predictions(paths: dict[str, str | os.PathLike[str]],
                         method: str) -> ClipPredictions:
    """The members' predictions CSVs (``name: path``) read, checked and combined."""
    members = {name: read_predictions(path) for name, path in paths.items()}
    check_same_clips(members, paths)
    ref = next(iter(members.values()))
    scores = combine([m.scores for m in members.values()], method)
    return ClipPredictions(ref.classes, ref.index, scores, ref.targets, 0.0)


def ensemble_metrics(test: ClipPredictions, valid: ClipPredictions | None,
                     cfg: EvaluateConfig) -> tuple[dict[str, Any], pd.DataFrame]:
    """Every metric of the ensemble and its per-class table, computed as for a model."""
    n_classes = len(test.classes)
    labelled_valid = valid if valid is not None and len(valid) else None
    metrics: dict[str, Any] = {"task": "multilabel"}
    ml, per_class = multilabel_metrics(test, labelled_valid, n_classes)
    metrics.update(ml)
    metrics.update(lwlrap_ci(test, n_classes, cfg, "ensemble"))
    if labelled_valid is not None and (labelled_valid.targets > 0).any():
        metrics["valid_lwlrap"] = rounded(per_class_lwlrap(labelled_valid.targets,
                                                          labelled_valid.scores).overall)
    sl, _, _ = singlelabel_metrics(test, n_classes)
    if sl["n_clips"] == len(test) and len(test) > 0:  # a single-label dataset: accuracy
        metrics["task"], metrics["singlelabel"] = "singlelabel", sl
        metrics["accuracy"] = sl["accuracy"]
    metrics["per_class"] = per_class_list(per_class)
    return metrics, per_class


def _write_skipped(members: list[str], method: str, metrics_path, details_path, plots_dir,
                   predictions_path) -> dict[str, Any]:
    """The declared files of an ensemble with fewer than two members: no metrics (the report
    and ``audiotag compare`` leave it out), header-only CSVs."""
    reason = f"fewer than two models to average ({members})"
    details = {"skipped": reason, "members": members, "method": method}
    write_csv(pd.DataFrame(columns=["class", "lwlrap"]), Path(plots_dir) / PER_CLASS_CSV)
    write_predictions_table(None, [], predictions_path)
    write_json(details_path, details)
    write_json(metrics_path, {})
    return details


def evaluate_ensemble(name: str, method: str, eval_cfg: EvaluateConfig,
                      test_paths: dict[str, str | os.PathLike[str]],
                      valid_paths: dict[str, str | os.PathLike[str]],
                      metrics_path: str | os.PathLike[str],
                      details_path: str | os.PathLike[str],
                      plots_dir: str | os.PathLike[str],
                      predictions_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Combine the members' (the keys of ``test_paths``) test and validation predictions by
    ``method``; write the headline metrics, every metric, the per-class CSV and the
    ensemble's test predictions (see the module doc). Fewer than two members (``models:
    null`` with one model trained): the files hold nothing. Returns every metric."""
    members = list(test_paths)
    if len(members) < 2:
        log.warning("%s: skipped, fewer than two models to average (%s)", name, members)
        return _write_skipped(members, method, metrics_path, details_path, plots_dir,
                              predictions_path)
    test = ensemble_predictions(test_paths, method)
    valid = ensemble_predictions(valid_paths, method)
    if not (test.targets > 0).any():
        raise ValueError(f"{', '.join(map(str, test_paths.values()))}: no labelled test "
                         "clip to evaluate an ensemble on")
    metrics, per_class = ensemble_metrics(test, valid, eval_cfg)
    metrics.update({"members": members, "method": method})
    write_csv(per_class, Path(plots_dir) / PER_CLASS_CSV)
    write_predictions_table(test, test.classes, predictions_path)
    write_json(details_path, metrics)
    write_headline(metrics_path, metrics, ENSEMBLE_KEYS)
    log.info("%s (%s of %s): test lwlrap %s on %d clips", name, method, ", ".join(members),
             metrics["lwlrap"], len(test))
    return metrics
