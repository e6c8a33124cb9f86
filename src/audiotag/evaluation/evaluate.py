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

import pandas as pd

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.contracts.names import (
    BY_SUBSET_CSV,
    CONFUSION_CSV,
    PER_CLASS_CSV,
    REPORT_CSV,
)
from audiotag.contracts.predictions import ClipPredictions
from audiotag.contracts.tables import rounded
from audiotag.core.device import pick_device, platform_record, set_threads
from audiotag.core.io import write_json
from audiotag.evaluation.config import EvaluateConfig
from audiotag.evaluation.scoring import (
    CLASSIFICATION_TASKS,
    best_epoch_gap,
    is_labelled,
    lwlrap_ci,
    multilabel_metrics,
    per_class_lists,
    regression_part,
    singlelabel_part,
    split_analysis,
    write_headline,
    write_plot_tables,
    write_predictions,
    write_timings,
)
from audiotag.training.checkpoint import load_checkpoint
from audiotag.training.inference import predict_clips, task_of

log = logging.getLogger(__name__)


def _predict(model, features_dir, role, cfg, device, spec=None) -> ClipPredictions | None:
    try:
        return predict_clips(model, features_dir, (role,), cfg.batch_size, device, spec)
    except ValueError as err:  # a split without clips (e.g. no validation fold)
        log.warning("no %s predictions: %s", role, err)
        return None


def score_roles(model, meta: CheckpointMeta, checkpoint, features_dir, cfg: EvaluateConfig,
                device) -> tuple[ClipPredictions, ClipPredictions | None,
                                 ClipPredictions | None]:
    """The test clips' predictions (trained on the store's classes, else ValueError), the
    validation clips' and, with ``evaluate.score_train``, the training clips' (None where
    there are none)."""
    spec = task_of(meta)
    test = predict_clips(model, features_dir, ("test",), cfg.batch_size, device, spec)
    if test.classes != meta.classes:
        raise ValueError(f"{checkpoint}: trained on classes {meta.classes} but "
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
    clips' scores (:func:`~audiotag.contracts.predictions.predictions_table`), given
    ``valid_predictions_path`` the validation clips' (only the header when there are none;
    ensembles tune their threshold on them). Returns every metric."""
    set_threads(cfg.threads)
    device = pick_device("auto")
    model, meta = load_checkpoint(checkpoint, device)
    task, spec = meta.task, task_of(meta)
    test, valid, train = score_roles(model, meta, checkpoint, features_dir, cfg, device)
    n_classes = spec.n_classes

    # classification scores, then what every task gets
    metrics: dict[str, Any] = {"task": task}
    per_class = pd.DataFrame({"class": test.classes})
    if task in CLASSIFICATION_TASKS and is_labelled(test):
        ml, per_class = multilabel_metrics(test, valid, n_classes)
        metrics.update(ml)
        metrics.update(lwlrap_ci(test, n_classes, cfg, meta.model_name))
    metrics.update({
        "valid_lwlrap": rounded(meta.valid_lwlrap),
        "best_epoch": meta.epoch,
        "n_parameters": int(meta.n_parameters),
        # where it ran, to explain a difference between machines (docs/reproducibility.md)
        "platform": {"train": meta.platform, "evaluate": platform_record(device)},
    })
    by_subset, overfit_lwlrap, subset_table = split_analysis(train, valid if n_classes else None,
                                                           test.classes)
    metrics["overfit"] = {**best_epoch_gap(Path(checkpoint).parent / "history.json",
                                            meta.epoch), **overfit_lwlrap}
    if by_subset:
        metrics["lwlrap_by_subset"] = by_subset
    single, report, confusion = singlelabel_part(test, n_classes, task)
    metrics.update(single)
    regression, _ = regression_part(test, meta, n_classes)
    if regression is not None:
        metrics["regression"] = regression
    metrics.update(per_class_lists(per_class, subset_table if by_subset else None))

    write_plot_tables(Path(plots_dir), {PER_CLASS_CSV: per_class, BY_SUBSET_CSV: subset_table,
                                        CONFUSION_CSV: confusion, REPORT_CSV: report})
    write_predictions(test, valid, meta.outputs, predictions_path, valid_predictions_path)
    if details_path is not None:
        write_json(details_path, metrics)
    write_headline(metrics_path, metrics)
    write_timings(timings_path, test, str(device))
    log.info("%s: test lwlrap %s on %d clips, %.2f ms/clip", meta.model_name,
             metrics.get("lwlrap"), len(test), 1000 * test.seconds / max(len(test), 1))
    return metrics
