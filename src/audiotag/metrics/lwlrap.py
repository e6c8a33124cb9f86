"""Label-weighted label-ranking average precision (lwlrap), DCASE 2019 Task 2's metric.

Definition (as in the task's reference implementation): for every clip and every true
label of it, take the precision at that label's rank, i.e. (true labels ranked at or above
it) / (its rank). A class's lwlrap is the mean of those precisions over its true labels;
the overall value weights each class by its share of all true labels, which is the same as
averaging over all (clip, true label) pairs.

Ties: a label's rank counts every label whose score is >= its own, so tied labels are all
ranked above each other (scikit-learn's ``label_ranking_average_precision_score`` treats
ties the same way). The reference implementation instead breaks ties by ``argsort`` order,
which is arbitrary; on tie-free scores the two agree exactly. With this rule a constant
score gives each clip precision = n_true / n_classes, never credit for an accidental order.

Clips without any true label contribute nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK = 512  # clips per block: the (chunk, C, C) comparison stays small in memory


@dataclass(frozen=True)
class LwlrapResult:
    overall: float
    per_class: np.ndarray  # (C,) NaN for classes with no true label
    weights: np.ndarray  # (C,) share of all true labels; sums to 1
    n_clips: int  # clips that had at least one true label


def _label_precisions(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Precision at each true label's rank; (N, C), zero where truth is 0."""
    out = np.zeros(truth.shape, dtype=np.float64)
    for start in range(0, len(truth), _CHUNK):
        t = truth[start:start + _CHUNK] > 0  # (n, C)
        s = scores[start:start + _CHUNK]
        at_or_above = s[:, None, :] >= s[:, :, None]  # (n, C_label, C_other)
        rank = at_or_above.sum(axis=2)  # labels scored >= this one, itself included
        hits = (at_or_above & t[:, None, :]).sum(axis=2)  # true labels among them
        out[start:start + _CHUNK] = np.where(t, hits / rank, 0.0)
    return out


def per_class_lwlrap(truth: np.ndarray, scores: np.ndarray) -> LwlrapResult:
    """Per-class lwlrap and class weights.

    Args:
        truth: (N, C) binary (any value > 0 counts as a true label).
        scores: (N, C) real-valued scores; higher means more likely.
    """
    truth = np.asarray(truth)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"truth {truth.shape} and scores {scores.shape} must be equal (N, C)")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    labelled = (truth > 0).any(axis=1)
    truth, scores = truth[labelled], scores[labelled]
    if not len(truth):
        raise ValueError("no clip has a true label: lwlrap is undefined")
    precisions = _label_precisions(truth, scores)
    labels_per_class = (truth > 0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(labels_per_class > 0,
                             precisions.sum(axis=0) / labels_per_class, np.nan)
    weights = labels_per_class / labels_per_class.sum()
    overall = float(np.nansum(per_class * weights))
    return LwlrapResult(overall, per_class, weights, int(labelled.sum()))


def lwlrap(truth: np.ndarray, scores: np.ndarray) -> float:
    """Overall lwlrap; see :func:`per_class_lwlrap`."""
    return per_class_lwlrap(truth, scores).overall
