"""Find noisy clips whose labels look wrong (``clean.method``).

Every method returns a :class:`Detection` for the *noisy* training clips only: curated
clips only inform the detector, validation clips choose its best epoch, test clips are
never looked at. The detector is the registered model ``clean.detector.model``, trained by
the training stack on the feature store (:mod:`audiotag.training.oof`).

``cleanlab``  out-of-fold probabilities of ``clean.detector.n_folds`` detectors trained on
              the curated + noisy training clips, then cleanlab's multi-label
              ``find_label_issues`` (confident learning); ``score`` is cleanlab's label
              quality (0 bad .. 1 good).
``agreement`` one detector trained on the curated training clips only scores the noisy
              clips; a clip is kept when its per-clip lwlrap (its given labels ranked by the
              model) is at least ``clean.flag.threshold`` and it is among the
              ``clean.flag.max_per_class`` best-scoring clips of one of its classes;
              ``score`` is that per-clip lwlrap.
``loss``      the same out-of-fold probabilities as ``cleanlab``; the
              ``clean.flag.loss_fraction`` of noisy clips with the highest BCE loss against
              their given labels are flagged; ``score`` is ``exp(-loss)`` (mean BCE over classes).
``oracle``    the ceiling: the true labels (the manifest's ``true_labels``, where the source
              knows them, e.g. ``synthetic``); every clip whose given labels differ is
              flagged and the true labels are the suggestion; no model is trained.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from audiotag.cleaning.config import CleanConfig
from audiotag.core.errors import ParamsError
from audiotag.data.manifest import labels_to_matrix
from audiotag.data.split import assign_folds
from audiotag.training.config import TrainConfig

log = logging.getLogger(__name__)

_EPS = 1e-7


@dataclass(frozen=True)
class Detection:
    """Detection result for the noisy clips, in their manifest order."""

    flagged: np.ndarray  # (n_noisy,) bool
    score: np.ndarray  # (n_noisy,) label quality, higher = labels look right
    proba: np.ndarray  # (n_noisy, C) model probabilities of each class


def clip_lwlrap(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-clip label-ranking average precision ``(N,)``; NaN for clips without labels.

    Ties are ranked as in :mod:`audiotag.metrics.lwlrap` (every label scored at or above).
    """
    t = truth > 0
    at_or_above = scores[:, None, :] >= scores[:, :, None]  # (N, C_label, C_other)
    rank = at_or_above.sum(axis=2)
    hits = (at_or_above & t[:, None, :]).sum(axis=2)
    precision = np.where(t, hits / rank, 0.0)
    n_true = t.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_true > 0, precision.sum(axis=1) / n_true, np.nan)


def bce_per_clip(truth: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """Mean binary cross-entropy over classes, per clip ``(N,)``."""
    p = np.clip(proba, _EPS, 1 - _EPS)
    return -(truth * np.log(p) + (1 - truth) * np.log(1 - p)).mean(axis=1)


def _as_lists(y: np.ndarray) -> list[list[int]]:
    return [np.flatnonzero(row).tolist() for row in y]


def cleanlab_issues(y: np.ndarray, proba: np.ndarray, noisy: np.ndarray,
                    cfg: CleanConfig) -> Detection:
    """cleanlab's multi-label filter on out-of-fold ``proba`` of every training clip."""
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    labels = _as_lists(y)
    issues = find_label_issues(labels, proba, filter_by=cfg.flag.filter_by)
    quality = get_label_quality_scores(labels, proba)
    log.info("cleanlab flagged %d of %d curated clips (left untouched)",
             int(issues[~noisy].sum()), int((~noisy).sum()))
    return Detection(issues[noisy].astype(bool), quality[noisy], proba[noisy])


def loss_issues(y_noisy: np.ndarray, proba: np.ndarray, cfg: CleanConfig) -> Detection:
    """The ``clean.flag.loss_fraction`` of noisy clips with the highest BCE are flagged."""
    loss = bce_per_clip(y_noisy, proba)
    n_flag = int(round(cfg.flag.loss_fraction * len(loss)))
    flagged = np.zeros(len(loss), dtype=bool)
    flagged[np.argsort(-loss, kind="stable")[:n_flag]] = True
    return Detection(flagged, np.exp(-loss), proba)


def agreement_issues(y_noisy: np.ndarray, proba: np.ndarray, cfg: CleanConfig) -> Detection:
    """Noisy clips whose given labels a curated-only model ranks poorly are flagged."""
    score = clip_lwlrap(y_noisy, proba)
    passes = ~(score < cfg.flag.threshold)  # clips without labels (NaN) cannot be judged: kept
    keep = passes & np.isnan(score)
    for c in range(y_noisy.shape[1]):
        rows = np.flatnonzero(passes & (y_noisy[:, c] > 0))
        best = rows[np.argsort(-score[rows], kind="stable")]
        keep[best[:cfg.flag.max_per_class]] = True  # max_per_class None: slice keeps all
    return Detection(~keep, np.nan_to_num(score, nan=1.0), proba)


def oracle_issues(y_noisy: np.ndarray, true_noisy: np.ndarray) -> Detection:
    """Every clip whose given labels differ from the true ones; the truth as ``proba``."""
    differs = np.abs(y_noisy - true_noisy)
    return Detection(differs.any(axis=1), 1.0 - differs.mean(axis=1),
                     true_noisy.astype(np.float64))


def detect(store: str | os.PathLike[str], part: pd.DataFrame, classes: list[str],
           cfg: CleanConfig, seed: int, train_cfg: TrainConfig,
           model_params: dict[str, Any]) -> Detection:
    """Run ``cfg.method`` on the store's training clips ``part`` (its index rows of role
    ``train``, in store order); the candidates are its noisy rows.

    ``train_cfg``/``model_params``: how the detector ``cfg.detector.model`` trains (see
    :func:`audiotag.cleaning.config.parse_clean`).
    """
    y = labels_to_matrix(part["labels"], classes)
    noisy = part["subset"].to_numpy() == "noisy"
    if cfg.method == "oracle":
        if "true_labels" not in part.columns:
            raise ParamsError(f"clean.method=oracle needs the true labels of the noisy clips "
                              f"(the manifest's true_labels column); {store}/index.csv has "
                              "none: this dataset source does not know them (synthetic does; "
                              "folder does when data.folder.csv has a true_labels column)")
        return oracle_issues(y[noisy], labels_to_matrix(part["true_labels"][noisy], classes))
    from audiotag.training.oof import fit_predict, out_of_fold_proba  # torch: only here

    if cfg.method == "agreement":
        if noisy.all():
            raise ValueError("clean.method=agreement needs curated clips to train on; "
                             "there are none")
        proba = fit_predict(store, cfg.detector.model, model_params, train_cfg, seed,
                            np.flatnonzero(~noisy), np.flatnonzero(noisy),
                            crop_aggregate=cfg.detector.crop_aggregate)
        return agreement_issues(y[noisy], proba, cfg)
    if cfg.method not in ("cleanlab", "loss"):
        raise ValueError(f"clean.method {cfg.method!r} detects nothing")
    # cv's folds: iterative stratification within each subset
    folds = assign_folds(part, classes, cfg.detector.n_folds, seed,
                         key="clean.detector.n_folds")
    proba = out_of_fold_proba(store, cfg.detector.model, model_params, train_cfg, seed,
                              folds, cfg.detector.crop_aggregate)
    if cfg.method == "cleanlab":
        return cleanlab_issues(y, proba, noisy, cfg)
    return loss_issues(y[noisy], proba[noisy], cfg)
