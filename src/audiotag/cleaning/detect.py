"""Find noisy clips whose labels look wrong (``clean.method``).

Every method returns a :class:`Detection` for the *noisy* clips only: curated clips only
inform the models, test clips are never looked at.

``cleanlab``  out-of-fold probabilities from ``clean.n_folds`` fast models trained on curated +
              noisy, then cleanlab's multi-label ``find_label_issues`` (confident learning);
              ``score`` is cleanlab's label quality score (0 bad .. 1 good).
``agreement`` one fast model trained on curated clips only scores the noisy clips; a clip is
              kept when its per-clip lwlrap (its given labels ranked by the model) is at least
              ``clean.threshold`` and it is among the ``clean.max_per_class`` best-scoring
              clips of one of its classes; ``score`` is that per-clip lwlrap.
``loss``      the same out-of-fold probabilities as ``cleanlab``; the ``clean.loss_fraction``
              of noisy clips with the highest BCE loss against their given labels are
              flagged; ``score`` is ``exp(-loss)`` (mean BCE over classes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from audiotag.cleaning.fastmodel import (
    fit,
    model_input,
    one_thread,
    out_of_fold_proba,
    predict_proba,
)
from audiotag.core.config import CleanConfig

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


def _cleanlab(x: np.ndarray, y: np.ndarray, noisy: np.ndarray, cfg: CleanConfig,
              seed: int) -> Detection:
    from cleanlab.multilabel_classification.filter import find_label_issues
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    proba = out_of_fold_proba(x, y, cfg, seed)
    labels = _as_lists(y)
    issues = find_label_issues(labels, proba, filter_by=cfg.filter_by)
    quality = get_label_quality_scores(labels, proba)
    log.info("cleanlab flagged %d of %d curated clips (left untouched)",
             int(issues[~noisy].sum()), int((~noisy).sum()))
    return Detection(issues[noisy].astype(bool), quality[noisy], proba[noisy])


def _loss(x: np.ndarray, y: np.ndarray, noisy: np.ndarray, cfg: CleanConfig,
          seed: int) -> Detection:
    proba = out_of_fold_proba(x, y, cfg, seed)[noisy]
    loss = bce_per_clip(y[noisy], proba)
    n_flag = int(round(cfg.loss_fraction * len(loss)))
    flagged = np.zeros(len(loss), dtype=bool)
    flagged[np.argsort(-loss, kind="stable")[:n_flag]] = True
    return Detection(flagged, np.exp(-loss), proba)


def _agreement(x: np.ndarray, y: np.ndarray, noisy: np.ndarray, cfg: CleanConfig,
               seed: int) -> Detection:
    with one_thread():
        model = fit(x[~noisy], y[~noisy], cfg, seed)
        proba = predict_proba(model, x[noisy])
    y_noisy = y[noisy]
    score = clip_lwlrap(y_noisy, proba)
    passes = ~(score < cfg.threshold)  # clips without labels (NaN) cannot be judged: kept
    keep = passes & np.isnan(score)
    for c in range(y.shape[1]):
        rows = np.flatnonzero(passes & (y_noisy[:, c] > 0))
        best = rows[np.argsort(-score[rows], kind="stable")]
        keep[best[:cfg.max_per_class]] = True  # max_per_class None: slice keeps all
    return Detection(~keep, np.nan_to_num(score, nan=1.0), proba)


def detect(x: np.ndarray, y: np.ndarray, noisy: np.ndarray, cfg: CleanConfig,
           seed: int) -> Detection:
    """Run ``cfg.method`` on images ``x (N, n_mels, frames)`` of curated + noisy clips.

    Args:
        x: fast log-mel images of the curated and noisy clips (never test).
        y: their given labels, multi-hot ``(N, C)``.
        noisy: ``(N,)`` bool, which rows are noisy clips (the candidates).
    """
    methods = {"cleanlab": _cleanlab, "loss": _loss, "agreement": _agreement}
    if cfg.method not in methods:
        raise ValueError(f"clean.method {cfg.method!r} detects nothing")
    if cfg.method == "agreement" and not (~noisy).any():
        raise ValueError("clean.method=agreement needs curated clips to train on; there are none")
    return methods[cfg.method](model_input(x, cfg), y, noisy, cfg, seed)
