"""The predicted-vs-true scatter of a regression or multitask model's targets (stage
``regression@<model>``, one per model of ``report.regression_plots``; none on a tagging
dataset, so the plots page never shows a regression chart that does not apply).

It reads the model's test predictions (``predictions/<model>.csv``: ``clip_id, labels``,
the class scores, then one raw output per target) and the true ``targets_*`` values of the
manifest, and writes ``regression.csv`` (``target, actual, predicted``: a Vega scatter in
`dvc plots show`) and ``regression.png`` (one panel per target, with y = x).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from audiotag.core.errors import ParamsError
from audiotag.core.io import atomic_path
from audiotag.data.manifest import TARGET_PREFIX, ManifestError, read_manifest
from audiotag.plots import plot_regression_scatter

log = logging.getLogger(__name__)


def regression_rows(predictions: pd.DataFrame, manifest: pd.DataFrame,
                    classes: list[str]) -> pd.DataFrame:
    """``target, actual, predicted``, one row per test clip and target: the prediction
    columns after ``clip_id, labels`` that are not classes, each matched with the manifest's
    ``targets_<name>`` (its ``targets_`` prefix optional in the predictions)."""
    outputs = [c for c in predictions.columns[2:] if c not in classes]
    if not outputs:
        raise ParamsError("report.regression_plots: the predictions have no regression "
                          "output (only class scores): is the model's train.task regression "
                          "or multitask?")
    truth = manifest.set_index("clip_id")
    parts = []
    for column in outputs:
        name = str(column).removeprefix(TARGET_PREFIX)
        if TARGET_PREFIX + name not in truth.columns:
            raise ManifestError(f"the manifest has no column {TARGET_PREFIX}{name} for the "
                             f"predictions' output {column!r}")
        actual = truth[TARGET_PREFIX + name].reindex(predictions["clip_id"]).to_numpy(float)
        parts.append(pd.DataFrame({"target": name, "actual": actual,
                                   "predicted": pd.to_numeric(predictions[column],
                                                              errors="coerce").to_numpy(float)}))
    return pd.concat(parts, ignore_index=True)


def write_regression_plot(model: str, predictions_path: str | os.PathLike[str],
                          manifest_dir: str | os.PathLike[str], csv_path: str | os.PathLike[str],
                          figure_path: str | os.PathLike[str]) -> pd.DataFrame:
    """Write ``csv_path`` and ``figure_path`` (module doc); returns the rows."""
    predictions = pd.read_csv(predictions_path, dtype={"clip_id": str, "labels": str},
                              keep_default_na=False)
    manifest, classes = read_manifest(manifest_dir)
    try:
        rows = regression_rows(predictions, manifest, classes)
    except (ParamsError, ManifestError) as err:
        raise type(err)(f"{predictions_path}: {err}") from None
    with atomic_path(csv_path) as tmp:
        rows.to_csv(tmp, index=False, float_format="%.6g")
    plot_regression_scatter(rows, Path(figure_path),
                            f"{model}: regression targets, predicted vs true (test clips)")
    log.info("%s: %d targets, %d test clips", model, rows["target"].nunique(),
             len(predictions))
    return rows
