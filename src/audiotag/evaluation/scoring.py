"""Metrics of per-clip scores (:class:`~audiotag.contracts.predictions.ClipPredictions`),
torch-free: what evaluate@ computes of a model's scores, and ensemble@ and cv@ of averaged
ones, and the files that hold them (headline, details lists, plot tables, predictions).
The metrics themselves are listed in :mod:`audiotag.evaluation.evaluate`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.contracts.predictions import ClipPredictions, write_predictions_table
from audiotag.contracts.tables import TARGET_PREFIX, rounded, write_csv
from audiotag.core.headline import KEYS, headline
from audiotag.core.io import read_json, write_json
from audiotag.evaluation.config import EvaluateConfig
from audiotag.metrics.classification import (
    accuracy,
    average_precision,
    multilabel_prf,
    single_label_rows,
    singlelabel_prf,
    tune_threshold,
)
from audiotag.metrics.lwlrap import bootstrap_lwlrap, ci_note, per_class_lwlrap
from audiotag.metrics.regression import regression_metrics

log = logging.getLogger(__name__)
CLASSIFICATION_TASKS = ("multilabel", "singlelabel", "multitask")


def multilabel_metrics(test: ClipPredictions, valid: ClipPredictions | None,
                       n_classes: int) -> tuple[dict[str, Any], pd.DataFrame]:
    """Headline metrics and the per-class table of a multi-label prediction."""
    truth, scores = test.targets, test.scores[:, :n_classes]
    result = per_class_lwlrap(truth, scores)
    ap = average_precision(truth, scores)
    if valid is not None and (valid.targets > 0).any():
        threshold, valid_f1 = tune_threshold(valid.targets, valid.scores[:, :n_classes])
    else:  # no validation labels: the conventional threshold
        threshold, valid_f1 = 0.5, None
    prf = multilabel_prf(truth, scores, threshold)
    metrics = {
        "lwlrap": rounded(result.overall),
        "mAP": rounded(np.nanmean(ap)) if np.isfinite(ap).any() else None,
        "f1_micro": rounded(prf.averages["micro"]["f1"]),
        "f1_macro": rounded(prf.averages["macro"]["f1"]),
        "precision_micro": rounded(prf.averages["micro"]["precision"]),
        "recall_micro": rounded(prf.averages["micro"]["recall"]),
        "threshold": threshold,
        "threshold_valid_f1": rounded(valid_f1),
        "n_test_clips": result.n_clips,
    }
    table = pd.DataFrame({
        "class": test.classes, "lwlrap": result.per_class, "weight": result.weights,
        "positives": truth.sum(axis=0).astype(int), "ap": ap, "precision": prf.precision,
        "recall": prf.recall, "f1": prf.f1,
    })
    return metrics, table


def subset_lwlrap(pred: ClipPredictions, n_classes: int) -> tuple[dict[str, float], pd.DataFrame]:
    """Per-subset overall lwlrap and a ``class, <subset>...`` per-class table of one split."""
    overall, columns = {}, {"class": pred.classes}
    subsets = pred.index["subset"].to_numpy()
    for subset in sorted(set(subsets)):
        rows = subsets == subset
        truth = pred.targets[rows]
        if not (truth > 0).any():
            continue
        result = per_class_lwlrap(truth, pred.scores[rows, :n_classes])
        overall[subset] = rounded(result.overall)
        columns[subset] = result.per_class
        columns[f"{subset}_positives"] = (truth > 0).sum(axis=0).astype(int)
    return overall, pd.DataFrame(columns)


def singlelabel_metrics(pred: ClipPredictions,
                        n_classes: int) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Accuracy, averaged P/R/F1, the per-class report and the confusion rows, over the
    clips with exactly one true label (the argmax of the scores is the prediction)."""
    rows = single_label_rows(pred.targets)
    actual = pred.targets[rows].argmax(axis=1)
    predicted = pred.scores[rows, :n_classes].argmax(axis=1)
    names = np.asarray(pred.classes, dtype=object)
    confusion = pd.DataFrame({"actual": names[actual], "predicted": names[predicted]})
    if not rows.any():  # e.g. an unlabelled test set (sklearn refuses empty arrays)
        return {"n_clips": 0}, pd.DataFrame({"class": pred.classes, "precision": np.nan,
                                             "recall": np.nan, "f1": np.nan,
                                             "support": 0}), confusion
    prf = singlelabel_prf(actual, predicted, n_classes)
    report = pd.DataFrame({"class": pred.classes, "precision": prf.precision,
                           "recall": prf.recall, "f1": prf.f1, "support": prf.support})
    metrics: dict[str, Any] = {"accuracy": rounded(accuracy(actual, predicted)),
                               "n_clips": int(rows.sum())}
    for average, values in prf.averages.items():
        for key, value in values.items():
            metrics[f"{key}_{average}"] = rounded(value)
    return metrics, report, confusion


def regression_outputs(pred: ClipPredictions, n_classes: int,
                       names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(true, predicted)`` ``(N, T)`` of the regression targets (layout: module doc)."""
    if pred.scores.shape[1] != n_classes + len(names):
        raise ValueError(f"model gives {pred.scores.shape[1]} outputs; expected {n_classes} "
                         f"class logits + {len(names)} regression targets {names}")
    missing = [n for n in names if TARGET_PREFIX + n not in pred.index]
    if missing:
        raise ValueError(f"feature store index has no column {TARGET_PREFIX}{missing[0]}")
    predicted = pred.scores[:, n_classes:].astype(np.float64)  # raw regression outputs
    true = pred.index[[TARGET_PREFIX + n for n in names]].to_numpy(dtype=np.float64)
    return true, predicted


def lwlrap_ci(test: ClipPredictions, n_classes: int, cfg: EvaluateConfig,
              name: str) -> dict[str, Any]:
    """``lwlrap_ci_low``/``_high``: the bootstrap 95 % CI over the test clips, and a
    ``ci_note`` (also logged) when too few clips are labelled
    (:data:`~audiotag.metrics.lwlrap.MIN_CI_CLIPS`)."""
    low, high = bootstrap_lwlrap(test.targets, test.scores[:, :n_classes],
                                 cfg.bootstrap_resamples, cfg.bootstrap_seed)
    out: dict[str, Any] = {"lwlrap_ci_low": rounded(low), "lwlrap_ci_high": rounded(high)}
    note = ci_note(int((test.targets > 0).any(axis=1).sum()))
    if note is not None:
        log.warning("%s: %s", name, note)
        out["ci_note"] = note
    return out


def best_epoch_gap(history_path: Path, best_epoch: int) -> dict[str, Any]:
    """Train and validation loss at the best epoch (from training's ``history.json``)."""
    if not history_path.exists():
        log.warning("%s missing: no train-vs-validation loss gap", history_path)
        return {}
    epochs = {e["epoch"]: e for e in read_json(history_path)["epochs"]}
    best = epochs.get(best_epoch)
    if best is None:
        raise ValueError(f"{history_path}: no record of the best epoch {best_epoch}")
    return {"train_loss": rounded(best["train_loss"]), "valid_loss": rounded(best["valid_loss"]),
            "loss_gap": rounded(best["valid_loss"] - best["train_loss"])}


def is_labelled(pred: ClipPredictions | None) -> bool:
    """Whether ``pred`` holds a clip with a label."""
    return pred is not None and bool((pred.targets > 0).any())


def split_analysis(train: ClipPredictions | None, valid: ClipPredictions | None,
                   classes: list[str]) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    """``(lwlrap_by_subset, overfit lwlrap entries, per-class curated/noisy table)`` of the
    training and validation predictions (either may be None)."""
    n_classes = len(classes)
    by_subset: dict[str, Any] = {}
    table = pd.DataFrame({"class": classes, "curated": np.nan, "noisy": np.nan,
                          "split": ""})  # stays empty when no split mixes both
    for role, pred in (("train", train), ("valid", valid)):
        if not is_labelled(pred):
            continue
        overall, per_class = subset_lwlrap(pred, n_classes)
        if {"curated", "noisy"} <= set(overall):
            if not by_subset:  # the table shows the first split that mixes both
                table = per_class.assign(split=role)
            by_subset[role] = overall
    overfit: dict[str, Any] = {}
    if is_labelled(train) and is_labelled(valid):
        train_l = per_class_lwlrap(train.targets, train.scores[:, :n_classes]).overall
        valid_l = per_class_lwlrap(valid.targets, valid.scores[:, :n_classes]).overall
        overfit = {"train_lwlrap": rounded(train_l), "valid_lwlrap": rounded(valid_l),
                   "lwlrap_gap": rounded(train_l - valid_l)}
    return by_subset, overfit, table


def noisy_label_suspects(table: pd.DataFrame, n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` classes whose noisy-clip lwlrap falls furthest below their curated one."""
    top = table.assign(gap=table["curated"] - table["noisy"])
    top = top[top["gap"] > 0].nlargest(n, "gap")
    return [{"class": r["class"], "curated": rounded(r["curated"]), "noisy": rounded(r["noisy"])}
            for _, r in top.iterrows()]


def regression_part(test: ClipPredictions, meta: CheckpointMeta,
                    n_classes: int) -> tuple[dict[str, Any] | None, pd.DataFrame]:
    """``(metrics or None, target/actual/predicted rows)`` for regression/multitask tasks."""
    rows = pd.DataFrame(columns=["target", "actual", "predicted"])
    names = meta.target_names
    if meta.task not in ("regression", "multitask") or not names:
        return None, rows
    true, predicted = regression_outputs(test, n_classes, names)
    per_target = regression_metrics(true, predicted, names)
    metrics = {"mse": rounded(float(np.nanmean([v["mse"] for v in per_target.values()]))),
               **{n: {k: (rounded(v) if k != "n" else v) for k, v in m.items()}
                  for n, m in per_target.items()}}
    rows = pd.concat([pd.DataFrame({"target": n, "actual": true[:, i],
                                    "predicted": predicted[:, i]})
                      for i, n in enumerate(names)], ignore_index=True)
    return metrics, rows


def per_class_list(per_class: pd.DataFrame) -> list[dict[str, Any]]:
    """Every class's lwlrap, AP, F1 and positives, for a details JSON."""
    return [{"class": r["class"], "lwlrap": rounded(r["lwlrap"]), "ap": rounded(r["ap"]),
             "f1": rounded(r["f1"]), "positives": int(r["positives"])}
            for _, r in per_class.iterrows()]


def write_headline(path: str | os.PathLike[str], details: dict[str, Any],
                   keys: tuple[str, ...] = KEYS) -> None:
    """``metrics/<name>.json``: the few numbers of :mod:`audiotag.core.headline` the run has
    (MSE for regression), under the file's name, taken from every metric."""
    values = {**details, "regression_mse": (details.get("regression") or {}).get("mse")}
    write_json(path, headline(Path(path).stem, values, keys))


def write_timings(path: str | os.PathLike[str] | None, test: ClipPredictions,
                  device: str) -> None:
    """``metrics/timings/evaluate/<model>.json``: the wall-clock inference time, apart
    from the results (it differs from run to run and machine to machine)."""
    if path is not None:
        ms = rounded(1000 * test.seconds / max(len(test), 1), 4)
        write_json(path, {"inference_ms_per_clip": ms,
                          "test_clips": len(test), "device": device})


def singlelabel_part(test: ClipPredictions, n_classes: int, task: str
                     ) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """``({"singlelabel": ..., "accuracy": ...} or {}, per-class report, confusion rows)``:
    the single-label metrics when the task is single-label or every test clip has one
    label (the report and confusion tables are written for any classifier)."""
    sl, report, confusion = singlelabel_metrics(test, n_classes) if n_classes else (
        {"n_clips": 0},
        pd.DataFrame(columns=["class", "precision", "recall", "f1", "support"]),
        pd.DataFrame(columns=["actual", "predicted"]))
    part: dict[str, Any] = {}
    if task == "singlelabel" or (task in CLASSIFICATION_TASKS and sl["n_clips"] == len(test)
                                 and len(test) > 0):
        part["singlelabel"] = sl
        if "accuracy" in sl:  # headline number of single-label datasets, beside lwlrap
            part["accuracy"] = sl["accuracy"]
    return part, report, confusion


def write_plot_tables(plots: Path, tables: dict[str, pd.DataFrame]) -> None:
    """The CSVs of ``plots/<model>/`` (always all of them: dvc.yaml declares them; one that
    does not apply holds its header). The regression scatter is the regression@ stages'
    (audiotag.analysis.regression), declared only for regression models."""
    for name, table in tables.items():
        write_csv(table, plots / name)


def per_class_lists(per_class: pd.DataFrame,
                    subset_table: pd.DataFrame | None) -> dict[str, list[dict[str, Any]]]:
    """The per-class details (lists: `dvc exp show` keeps them out of its columns): every
    class's lwlrap/AP/F1, and with curated-vs-noisy lwlrap the suspect classes and every
    class's pair (the report's curated-vs-noisy chart of all models)."""
    lists: dict[str, list[dict[str, Any]]] = {}
    if "lwlrap" in per_class:
        lists["per_class"] = per_class_list(per_class)
    if subset_table is not None:
        lists["noisy_label_suspects"] = noisy_label_suspects(subset_table)
        lists["lwlrap_by_subset_per_class"] = [
            {"class": r["class"], "curated": rounded(r["curated"]), "noisy": rounded(r["noisy"])}
            for _, r in subset_table.iterrows()]
    return lists


def write_predictions(test: ClipPredictions, valid: ClipPredictions | None,
                      outputs: list[str], path: str | os.PathLike[str] | None,
                      valid_path: str | os.PathLike[str] | None) -> None:
    """The test clips' scores (:func:`~audiotag.contracts.predictions.predictions_table`) at
    ``path`` and the validation clips' at ``valid_path`` (only the header when there are
    none), those given."""
    if path is not None:
        write_predictions_table(test, outputs, path)
    if valid_path is not None:
        write_predictions_table(valid, outputs, valid_path)
