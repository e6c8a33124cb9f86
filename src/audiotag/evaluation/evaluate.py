"""Evaluate a checkpoint on the test clips of a feature store.

What is computed (``metrics/<model>.json`` and the CSVs in ``plots/<model>/``):

- multi-label (every classification task): lwlrap overall and per class; AP per class
  and mAP; precision/recall/F1 (micro and macro) at one threshold tuned for micro F1 on
  the validation clips; per-class lwlrap of the curated vs the noisy clips of every split
  that holds both (the training split by default: classes whose noisy lwlrap is far below
  their curated lwlrap are classes whose noisy labels are wrong);
- single-label (checkpoint ``task: singlelabel``, or every test clip has exactly one
  label): accuracy of the argmax, per-class precision/recall/F1 with micro/macro/weighted
  averages, a confusion matrix (``confusion.csv``: one ``actual,predicted`` row per clip;
  written for the single-label test clips of any dataset);
- regression (``task: regression | multitask``): Spearman, Pearson and MSE per target;
- always: parameter count, best epoch, the platform it ran on, and the train-vs-
  validation gap at the best epoch (losses from ``history.json``, lwlrap re-scored).

Model output layout assumed for regression/multitask checkpoints: the class logits come
first, then one output per regression target, in the order of ``meta["targets"]``
(names of the manifest's ``targets_*`` columns, with or without the prefix);
:func:`predict_clips` returns class scores (softmax for single-label tasks, else sigmoid)
followed by the raw regression outputs. Single-label results also put ``accuracy`` at the
top level of the metrics, next to lwlrap, for comparison with published numbers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audiotag.core.device import pick_device, platform_record, set_threads
from audiotag.core.headline import KEYS, headline
from audiotag.core.io import atomic_path, read_json, write_json
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
from audiotag.training.checkpoint import load_checkpoint
from audiotag.training.inference import ClipPredictions, output_names, predict_clips, task_of

log = logging.getLogger(__name__)
TARGET_PREFIX = "targets_"
CLASSIFICATION_TASKS = ("multilabel", "singlelabel", "multitask")
# files written into the plots directory (fixed names: dvc.yaml declares them)
PER_CLASS_CSV = "per_class_lwlrap.csv"
BY_SUBSET_CSV = "lwlrap_by_subset.csv"
CONFUSION_CSV = "confusion.csv"
REPORT_CSV = "per_class_report.csv"


def _r(value: float | None, digits: int = 6) -> float | None:
    """Rounded float for JSON; NaN/None -> None (JSON has no NaN)."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


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
        "lwlrap": _r(result.overall),
        "mAP": _r(np.nanmean(ap)) if np.isfinite(ap).any() else None,
        "f1_micro": _r(prf.averages["micro"]["f1"]),
        "f1_macro": _r(prf.averages["macro"]["f1"]),
        "precision_micro": _r(prf.averages["micro"]["precision"]),
        "recall_micro": _r(prf.averages["micro"]["recall"]),
        "threshold": threshold,
        "threshold_valid_f1": _r(valid_f1),
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
        overall[subset] = _r(result.overall)
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
    metrics: dict[str, Any] = {"accuracy": _r(accuracy(actual, predicted)),
                               "n_clips": int(rows.sum())}
    for average, values in prf.averages.items():
        for key, value in values.items():
            metrics[f"{key}_{average}"] = _r(value)
    return metrics, report, confusion


def _target_names(meta: dict[str, Any]) -> list[str]:
    return [str(t).removeprefix(TARGET_PREFIX) for t in meta.get("targets") or []]


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
    out: dict[str, Any] = {"lwlrap_ci_low": _r(low), "lwlrap_ci_high": _r(high)}
    note = ci_note(int((test.targets > 0).any(axis=1).sum()))
    if note is not None:
        log.warning("%s: %s", name, note)
        out["ci_note"] = note
    return out


def _best_epoch_gap(history_path: Path, best_epoch: int) -> dict[str, Any]:
    """Train and validation loss at the best epoch (from training's ``history.json``)."""
    if not history_path.exists():
        log.warning("%s missing: no train-vs-validation loss gap", history_path)
        return {}
    epochs = {e["epoch"]: e for e in read_json(history_path)["epochs"]}
    best = epochs.get(best_epoch)
    if best is None:
        raise ValueError(f"{history_path}: no record of the best epoch {best_epoch}")
    return {"train_loss": _r(best["train_loss"]), "valid_loss": _r(best["valid_loss"]),
            "loss_gap": _r(best["valid_loss"] - best["train_loss"])}


def _predict(model, features_dir, role, cfg, device, spec=None) -> ClipPredictions | None:
    try:
        return predict_clips(model, features_dir, (role,), cfg.batch_size, device, spec)
    except ValueError as err:  # a split without clips (e.g. no validation fold)
        log.warning("no %s predictions: %s", role, err)
        return None


def _labelled(pred: ClipPredictions | None) -> bool:
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
        if not _labelled(pred):
            continue
        overall, per_class = subset_lwlrap(pred, n_classes)
        if {"curated", "noisy"} <= set(overall):
            if not by_subset:  # the table shows the first split that mixes both
                table = per_class.assign(split=role)
            by_subset[role] = overall
    overfit: dict[str, Any] = {}
    if _labelled(train) and _labelled(valid):
        train_l = per_class_lwlrap(train.targets, train.scores[:, :n_classes]).overall
        valid_l = per_class_lwlrap(valid.targets, valid.scores[:, :n_classes]).overall
        overfit = {"train_lwlrap": _r(train_l), "valid_lwlrap": _r(valid_l),
                   "lwlrap_gap": _r(train_l - valid_l)}
    return by_subset, overfit, table


def noisy_label_suspects(table: pd.DataFrame, n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` classes whose noisy-clip lwlrap falls furthest below their curated one."""
    top = table.assign(gap=table["curated"] - table["noisy"])
    top = top[top["gap"] > 0].nlargest(n, "gap")
    return [{"class": r["class"], "curated": _r(r["curated"]), "noisy": _r(r["noisy"])}
            for _, r in top.iterrows()]


def regression_part(test: ClipPredictions, meta: dict[str, Any],
                    n_classes: int) -> tuple[dict[str, Any] | None, pd.DataFrame]:
    """``(metrics or None, target/actual/predicted rows)`` for regression/multitask tasks."""
    rows = pd.DataFrame(columns=["target", "actual", "predicted"])
    names = _target_names(meta)
    if meta.get("task") not in ("regression", "multitask") or not names:
        return None, rows
    true, predicted = regression_outputs(test, n_classes, names)
    per_target = regression_metrics(true, predicted, names)
    metrics = {"mse": _r(float(np.nanmean([v["mse"] for v in per_target.values()]))),
               **{n: {k: (_r(v) if k != "n" else v) for k, v in m.items()}
                  for n, m in per_target.items()}}
    rows = pd.concat([pd.DataFrame({"target": n, "actual": true[:, i],
                                    "predicted": predicted[:, i]})
                      for i, n in enumerate(names)], ignore_index=True)
    return metrics, rows


def _per_class_list(per_class: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"class": r["class"], "lwlrap": _r(r["lwlrap"]), "ap": _r(r["ap"]),
             "f1": _r(r["f1"]), "positives": int(r["positives"])}
            for _, r in per_class.iterrows()]


def per_clip_table(pred: ClipPredictions, outputs: list[str]) -> pd.DataFrame:
    """``clip_id, labels, <one column per output>``: a split's scores clip by clip (class
    scores, then raw regression outputs), to inspect errors and compare runs clip by clip."""
    clash = {"clip_id", "labels"} & set(outputs)
    if clash:
        raise ValueError(f"a class or target is named {sorted(clash)[0]!r}, which is a "
                         "column of the per-clip predictions; rename it")
    if pred.scores.shape[1] != len(outputs):
        raise ValueError(f"model gives {pred.scores.shape[1]} outputs; the checkpoint names "
                         f"{len(outputs)}")
    table = pd.DataFrame(pred.scores, columns=outputs)
    table.insert(0, "labels", pred.index["labels"].to_numpy())
    table.insert(0, "clip_id", pred.index["clip_id"].to_numpy())
    return table


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
        write_json(path, {"inference_ms_per_clip": _r(1000 * test.seconds / max(len(test), 1), 4),
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
        _write_csv(table, plots / name)


def per_class_lists(per_class: pd.DataFrame,
                    subset_table: pd.DataFrame | None) -> dict[str, list[dict[str, Any]]]:
    """The per-class details (lists: `dvc exp show` keeps them out of its columns): every
    class's lwlrap/AP/F1, and with curated-vs-noisy lwlrap the suspect classes and every
    class's pair (the report's curated-vs-noisy chart of all models)."""
    lists: dict[str, list[dict[str, Any]]] = {}
    if "lwlrap" in per_class:
        lists["per_class"] = _per_class_list(per_class)
    if subset_table is not None:
        lists["noisy_label_suspects"] = noisy_label_suspects(subset_table)
        lists["lwlrap_by_subset_per_class"] = [
            {"class": r["class"], "curated": _r(r["curated"]), "noisy": _r(r["noisy"])}
            for _, r in subset_table.iterrows()]
    return lists


def write_predictions(test: ClipPredictions, valid: ClipPredictions | None,
                      outputs: list[str], path: str | os.PathLike[str] | None,
                      valid_path: str | os.PathLike[str] | None) -> None:
    """The test clips' scores (:func:`per_clip_table`) at ``path`` and the validation
    clips' at ``valid_path`` (only the header when there are none), those given."""
    if path is not None:
        _write_csv(per_clip_table(test, outputs), Path(path))
    if valid_path is not None:
        _write_csv(per_clip_table(valid, outputs) if valid is not None else
                   pd.DataFrame(columns=["clip_id", "labels", *outputs]), Path(valid_path))


def score_roles(model, meta: dict[str, Any], checkpoint, features_dir, cfg: EvaluateConfig,
                device) -> tuple[ClipPredictions, ClipPredictions | None,
                                 ClipPredictions | None]:
    """The test clips' predictions (trained on the store's classes, else ValueError), the
    validation clips' and, with ``evaluate.score_train``, the training clips' (None where
    there are none)."""
    spec = task_of(meta)
    test = predict_clips(model, features_dir, ("test",), cfg.batch_size, device, spec)
    if test.classes != meta["classes"]:
        raise ValueError(f"{checkpoint}: trained on classes {meta['classes']} but "
                         f"{features_dir} has {test.classes}; re-run training")
    valid = _predict(model, features_dir, "valid", cfg, device, spec)
    train = (_predict(model, features_dir, "train", cfg, device, spec) if cfg.score_train
             and spec.n_classes else None)
    return test, valid, train


def evaluate_model(checkpoint: str | os.PathLike[str], features_dir: str | os.PathLike[str],
                   metrics_path: str | os.PathLike[str], plots_dir: str | os.PathLike[str],
                   cfg: EvaluateConfig,
                   predictions_path: str | os.PathLike[str] | None = None,
                   details_path: str | os.PathLike[str] | None = None,
                   valid_predictions_path: str | os.PathLike[str] | None = None,
                   timings_path: str | os.PathLike[str] | None = None) -> dict:
    """Score ``checkpoint`` on the test clips; write the headline numbers to
    ``metrics_path`` (:func:`write_headline`), the inference time to ``timings_path``
    (when given), every metric to ``details_path`` (when given), the
    CSVs of ``plots_dir`` (see the module doc) and, given ``predictions_path``, the test
    clips' scores (:func:`per_clip_table`), given ``valid_predictions_path`` the validation
    clips' (only the header when there are none; ensembles tune their threshold on them).
    Returns every metric."""
    set_threads(cfg.threads)
    device = pick_device("auto")
    model, meta = load_checkpoint(checkpoint, device)
    task = meta.get("task", "multilabel")
    spec = task_of(meta)
    test, valid, train = score_roles(model, meta, checkpoint, features_dir, cfg, device)
    n_classes = spec.n_classes

    # classification scores, then what every task gets
    metrics: dict[str, Any] = {"task": task}
    per_class = pd.DataFrame({"class": test.classes})
    if task in CLASSIFICATION_TASKS and _labelled(test):
        ml, per_class = multilabel_metrics(test, valid, n_classes)
        metrics.update(ml)
        metrics.update(lwlrap_ci(test, n_classes, cfg, meta["model_name"]))
    metrics.update({
        "valid_lwlrap": _r(meta.get("valid_lwlrap")),
        "best_epoch": int(meta["epoch"]),
        "n_parameters": int(meta["n_parameters"]),
        # where it ran, to explain a difference between machines (docs/reproducibility.md)
        "platform": {"train": meta.get("platform"), "evaluate": platform_record(device)},
    })
    by_subset, overfit_lwlrap, subset_table = split_analysis(train, valid if n_classes else None,
                                                           test.classes)
    metrics["overfit"] = {**_best_epoch_gap(Path(checkpoint).parent / "history.json",
                                            int(meta["epoch"])), **overfit_lwlrap}
    if by_subset:
        metrics["lwlrap_by_subset"] = by_subset
    single, report, confusion = singlelabel_part(test, n_classes, task)
    metrics.update(single)
    regression, _ = regression_part(test, {**meta, "task": task}, n_classes)
    if regression is not None:
        metrics["regression"] = regression
    metrics.update(per_class_lists(per_class, subset_table if by_subset else None))

    write_plot_tables(Path(plots_dir), {PER_CLASS_CSV: per_class, BY_SUBSET_CSV: subset_table,
                                        CONFUSION_CSV: confusion, REPORT_CSV: report})
    write_predictions(test, valid, output_names(meta), predictions_path, valid_predictions_path)
    if details_path is not None:
        write_json(details_path, metrics)
    write_headline(metrics_path, metrics)
    write_timings(timings_path, test, str(device))
    log.info("%s: test lwlrap %s on %d clips, %.2f ms/clip", meta["model_name"],
             metrics.get("lwlrap"), len(test), 1000 * test.seconds / max(len(test), 1))
    return metrics
