"""The ``clean_labels`` stage's work: detect (``clean.method``), act (``clean.action``), report.

It reads the feature store that training reads. Only noisy training clips are candidates;
curated clips inform the detector, validation and test clips are never changed.

Actions on the flagged noisy clips:
    drop     leave them out of the labels file (they do not train)
    relabel  replace their labels with the suggested ones (see :func:`suggest_labels`)
    weight   their loss weight times ``clean.fix.flagged_weight`` (every other clip keeps its own)
    keep     change nothing (report only)

Outputs: ``<out>/labels.csv`` (``clip_id, labels, weight`` of every clip that trains; the
``train`` stage reads it, see :func:`audiotag.features.store.relabel_index`),
``<out>/label_issues.csv`` (one row per flagged clip, grouped by suspect class, worst first),
``<out>/label_stats.csv``, ``<out>/cooccurrence_pairs.csv`` (class pairs labelled together
more often in the noisy subset than in the curated one), the metrics JSON, the per-class
plot CSV and the co-occurrence heatmaps.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audiotag.cleaning.config import CleanConfig
from audiotag.cleaning.cooccurrence import label_cooccurrence, plot_cooccurrence
from audiotag.cleaning.passthrough import label_metrics, label_stats
from audiotag.contracts.store import read_store_index as store_index
from audiotag.core.io import atomic_dir, atomic_path, write_json
from audiotag.data.manifest import CLASSES_NAME, join_labels, labels_to_matrix, read_classes
from audiotag.training.config import TrainConfig

log = logging.getLogger(__name__)

LABELS_NAME = "labels.csv"
ISSUE_COLUMNS = ["class", "clip_id", "labels", "suggested_labels", "score"]
PLOT_COLUMNS = ["class", "flagged", "noisy_clips", "flagged_fraction"]


def suggest_labels(given: np.ndarray, proba: np.ndarray, threshold: float) -> np.ndarray:
    """The smallest edit of the given labels that the model is confident about ``(N, C)``.

    A given label stays unless its probability is below ``1 - threshold``; a missing label
    is added when its probability is at least ``threshold``. A clip left without labels
    gets its most probable class (every clip of a tagging set has at least one sound).
    """
    keep = (given > 0) & (proba >= 1 - threshold)
    out = (keep | (proba >= threshold)).astype(np.float32)
    empty = out.sum(axis=1) == 0
    out[np.flatnonzero(empty), proba[empty].argmax(axis=1)] = 1.0
    return out


def suspect_class(given: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Per clip, the class whose given label the model disagrees with most ``(N,)``."""
    return np.abs(given - proba).argmax(axis=1)


def detection_scores(flagged: np.ndarray, corrupted: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of ``flagged`` against the truly ``corrupted`` clips.

    An empty flag set has precision 0; F1 is 0 when precision + recall is 0.
    """
    tp = int((flagged & corrupted).sum())
    precision = tp / int(flagged.sum()) if flagged.any() else 0.0
    recall = tp / int(corrupted.sum()) if corrupted.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"detection_precision": round(precision, 6), "detection_recall": round(recall, 6),
            "detection_f1": round(f1, 6)}


def apply_action(manifest: pd.DataFrame, rows: np.ndarray, flagged: np.ndarray,
                 suggested: list[str], cfg: CleanConfig) -> pd.DataFrame:
    """Rows after ``cfg.action`` on the flagged noisy ``rows`` (positions in ``manifest``);
    the result always has a ``weight`` column (1.0 where ``manifest`` has none)."""
    out = manifest.copy()
    weight = (out["weight"].to_numpy(dtype=np.float64).copy() if "weight" in out.columns
              else np.ones(len(out), dtype=np.float64))
    out["weight"] = weight
    hit = rows[flagged]
    if cfg.action == "weight":
        weight[hit] *= cfg.fix.flagged_weight
        out["weight"] = weight
    elif cfg.action == "relabel":
        col = out.columns.get_loc("labels")
        for pos, labels in zip(hit, np.asarray(suggested, dtype=object)[flagged], strict=True):
            out.iat[pos, col] = labels
    elif cfg.action == "drop":
        out = out.drop(index=out.index[hit]).reset_index(drop=True)
    return out


def _corrupted(df: pd.DataFrame, classes: list[str]) -> np.ndarray:
    return (labels_to_matrix(df["labels"], classes)
            != labels_to_matrix(df["true_labels"], classes)).any(axis=1)


def _issues(manifest: pd.DataFrame, rows: np.ndarray, det: Any, suggested: list[str],
            classes: list[str]) -> pd.DataFrame:
    """One row per flagged clip, grouped by suspect class, lowest score first."""
    given = labels_to_matrix(manifest["labels"].iloc[rows], classes)
    suspect = suspect_class(given, det.proba)
    sel = np.flatnonzero(det.flagged)
    table = pd.DataFrame({
        "class": [classes[c] for c in suspect[sel]],
        "clip_id": manifest["clip_id"].iloc[rows[sel]].to_numpy(),
        "labels": manifest["labels"].iloc[rows[sel]].to_numpy(),
        "suggested_labels": np.asarray(suggested, dtype=object)[sel],
        "score": np.round(det.score[sel], 6),
    })
    if "true_labels" in manifest.columns:
        table["true_labels"] = manifest["true_labels"].iloc[rows[sel]].to_numpy()
    order = {name: i for i, name in enumerate(classes)}
    table["_order"] = table["class"].map(order)
    table = table.sort_values(["_order", "score", "clip_id"], kind="stable")
    return table.drop(columns="_order").reset_index(drop=True)


def _per_class(manifest: pd.DataFrame, issues: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Flagged clips per (suspect) class over the class's noisy clips (by given labels)."""
    noisy = manifest[manifest["subset"] == "noisy"]
    n_noisy = labels_to_matrix(noisy["labels"], classes).sum(axis=0).astype(int)
    flagged = issues["class"].value_counts().reindex(classes, fill_value=0).to_numpy()
    fraction = np.round(flagged / np.maximum(n_noisy, 1), 6)
    return pd.DataFrame({"class": classes, "flagged": flagged, "noisy_clips": n_noisy,
                         "flagged_fraction": fraction}, columns=PLOT_COLUMNS)


# kept out of `metrics:` (`dvc metrics show`): clip counts and the per-class counts (those
# are plotted from the flagged-per-class CSV)
DETAIL_KEYS = ("clips", "flagged_per_class", "cooccurrence_noisy_excess")


def _outcome_metrics(raw: pd.DataFrame, cleaned: pd.DataFrame, flagged: np.ndarray,
                     rows: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Fraction kept; on data with ``true_labels``: detection scores and the noise left."""
    n_noisy = len(rows)
    kept = int((cleaned["subset"] == "noisy").sum())
    out: dict[str, Any] = {
        "flagged": int(flagged.sum()),
        "flagged_fraction": round(float(flagged.mean()) if n_noisy else 0.0, 6),
        "fraction_kept": round(kept / n_noisy if n_noisy else 1.0, 6),
    }
    if "true_labels" in raw.columns and n_noisy:
        out.update(detection_scores(flagged, _corrupted(raw.iloc[rows], classes)))
        noisy = cleaned[cleaned["subset"] == "noisy"]
        weight = (noisy["weight"].to_numpy(dtype=np.float64) if "weight" in noisy.columns
                  else np.ones(len(noisy)))
        wrong = _corrupted(noisy, classes) if len(noisy) else np.zeros(0, dtype=bool)
        # share of the noisy clips' training weight that still carries a wrong label
        out["noise_rate_after"] = round(float((weight * wrong).sum() / weight.sum())
                                        if weight.sum() > 0 else 0.0, 6)
    return out


def read_store_index(store: Path) -> tuple[pd.DataFrame, list[str]]:
    """The feature store's index (every clip, with its role) and class list."""
    index = store_index(store, text=("true_labels",))
    return index, read_classes(store / CLASSES_NAME)


def clean_labels(features_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                 metrics_path: str | os.PathLike[str], plot_path: str | os.PathLike[str],
                 cfg: CleanConfig, seed: int, train_cfg: TrainConfig | None = None,
                 model_params: dict[str, Any] | None = None,
                 details_path: str | os.PathLike[str] | None = None,
                 cooccurrence_plot: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Detect, act, write every output; returns every metric. ``metrics_path`` gets the
    headline numbers (all but :data:`DETAIL_KEYS`), ``details_path`` (when given) all.

    ``train_cfg``/``model_params``: how the detector trains (needed by every method that
    trains one: ``cleanlab``, ``loss``, ``agreement``). The label co-occurrence of the
    given labels per subset (:mod:`.cooccurrence`) goes to ``<out>/cooccurrence_pairs.csv``,
    its 10 worst pairs into the metrics, its heatmaps to ``cooccurrence_plot``.
    """
    start = time.perf_counter()
    store, out_dir = Path(features_dir), Path(out_dir)
    index, classes = read_store_index(store)
    part = index[index["role"] == "train"].reset_index(drop=True)  # FeatureSet order
    rows = np.flatnonzero(part["subset"].to_numpy() == "noisy")
    if cfg.method == "none" or not len(rows):
        flagged = np.zeros(len(rows), dtype=bool)
        issues = pd.DataFrame(columns=ISSUE_COLUMNS)
        cleaned = apply_action(part, rows, flagged, [], cfg)
    else:
        from audiotag.cleaning.detect import detect  # torch + cleanlab: only when needed

        if cfg.method != "oracle" and (train_cfg is None or model_params is None):
            raise ValueError(f"clean.method={cfg.method} trains a detector: pass its "
                             "training settings and model params")
        det = detect(store, part, classes, cfg, seed, train_cfg, model_params or {})
        flagged = det.flagged
        given = labels_to_matrix(part["labels"].iloc[rows], classes)
        suggested = [join_labels([classes[c] for c in np.flatnonzero(r)])
                     for r in suggest_labels(given, det.proba, cfg.fix.relabel_threshold)]
        issues = _issues(part, rows, det, suggested, classes)
        cleaned = apply_action(part, rows, flagged, suggested, cfg)
    metrics = {**label_metrics(index),
               **_outcome_metrics(part, cleaned, flagged, rows, classes)}
    matrices, pairs = label_cooccurrence(index, classes)  # the labels as given
    metrics["cooccurrence_noisy_excess"] = [
        {"pair": f"{r.a} + {r.b}", "curated": round(r.curated, 4), "noisy": round(r.noisy, 4)}
        for r in pairs.head(10).itertuples()]
    per_class = _per_class(part, issues, classes)
    metrics["flagged_per_class"] = dict(zip(classes, per_class["flagged"].tolist(), strict=True))
    after = pd.concat([cleaned, index[index["role"] != "train"]], ignore_index=True)
    with atomic_dir(out_dir) as tmp:
        cleaned[["clip_id", "labels", "weight"]].to_csv(tmp / LABELS_NAME, index=False)
        issues.to_csv(tmp / "label_issues.csv", index=False)
        label_stats(after, classes).to_csv(tmp / "label_stats.csv", index=False)
        pairs.to_csv(tmp / "cooccurrence_pairs.csv", index=False)
    if cooccurrence_plot is not None:
        plot_cooccurrence(matrices, cooccurrence_plot)
    with atomic_path(plot_path) as tmp:
        per_class.to_csv(tmp, index=False)
    if details_path is not None:
        write_json(details_path, metrics)
    write_json(metrics_path, {k: v for k, v in metrics.items() if k not in DETAIL_KEYS})
    log.info("clean.method=%s action=%s: flagged %d of %d noisy clips in %.1f s",
             cfg.method, cfg.action, metrics["flagged"], len(rows), time.perf_counter() - start)
    return metrics
