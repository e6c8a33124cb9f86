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


def clip_precisions(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per clip: the sum of its true labels' precisions and its number of true labels.

    Overall lwlrap is ``sum(p) / sum(n)`` over the clips, so a bootstrap over clips only
    resamples these two vectors (:func:`bootstrap_lwlrap`, :func:`paired_bootstrap`).
    """
    truth = np.asarray(truth)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"truth {truth.shape} and scores {scores.shape} must be equal (N, C)")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    return _label_precisions(truth, scores).sum(axis=1), (truth > 0).sum(axis=1)


def _resampled(n_clips: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n_clips)`` clip indices drawn with replacement (seeded)."""
    return np.random.default_rng(seed).integers(0, n_clips, size=(resamples, n_clips))


def bootstrap_lwlrap(truth: np.ndarray, scores: np.ndarray, resamples: int = 1000,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """``(low, high)`` percentile bootstrap interval of overall lwlrap over the clips."""
    p, n = clip_precisions(truth, scores)
    if not n.any():
        raise ValueError("no clip has a true label: lwlrap is undefined")
    idx = _resampled(len(p), resamples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = p[idx].sum(axis=1) / n[idx].sum(axis=1)
    values = values[np.isfinite(values)]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


MIN_CI_CLIPS = 30
"""Fewer labelled test clips than this and a bootstrap CI says little (with 4 clips that the
model ranks right, every resample scores 1.0: a CI of [1.000, 1.000]): see :func:`ci_note`."""


def ci_note(n_clips: int, level: float = 0.95) -> str | None:
    """A warning for a CI drawn from fewer than :data:`MIN_CI_CLIPS` labelled clips, or None."""
    if n_clips >= MIN_CI_CLIPS:
        return None
    return (f"only {n_clips} labelled test clips (fewer than {MIN_CI_CLIPS}): the "
            f"{100 * level:g} % CI says little")


def paired_bootstrap(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                     resamples: int = 1000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float, float]:
    """Difference of overall lwlrap ``a - b`` on the same clips, resampled together.

    ``a``/``b``: :func:`clip_precisions` of two predictions of the same clips in the same
    order. Returns ``(difference, low, high, p)``: the observed difference, its percentile
    interval, and the two-sided bootstrap p-value (twice the smaller share of resampled
    differences on either side of 0).
    """
    (pa, na), (pb, nb) = a, b
    if len(pa) != len(pb) or not np.array_equal(na, nb):
        raise ValueError("paired bootstrap needs the same clips with the same labels")
    return paired_bootstrap_blocks([(pa, pb, na)], resamples, seed, level)


def paired_bootstrap_blocks(blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                            resamples: int = 1000, seed: int = 0,
                            level: float = 0.95) -> tuple[float, float, float, float]:
    """:func:`paired_bootstrap` of the mean difference over several test sets.

    Each block ``(pa, pb, n)`` is one test set: per clip, the precision sums of ``a`` and
    ``b`` (e.g. averaged over seeds that share this test set) and the clip's true-label
    count. The statistic is the mean over blocks of ``lwlrap(a) - lwlrap(b)``; each block's
    clips are resampled on their own, the same draw for ``a`` and ``b``.
    """
    if not blocks:
        raise ValueError("paired bootstrap needs at least one shared test set")
    rng = np.random.default_rng(seed)
    observed, diffs = 0.0, np.zeros(resamples)
    for pa, pb, n in blocks:
        if not len(pa) == len(pb) == len(n) or not n.any():
            raise ValueError("paired bootstrap needs the same labelled clips in a and b")
        observed += (pa.sum() - pb.sum()) / n.sum()
        idx = rng.integers(0, len(n), size=(resamples, len(n)))
        with np.errstate(invalid="ignore", divide="ignore"):
            diffs += (pa[idx].sum(axis=1) - pb[idx].sum(axis=1)) / n[idx].sum(axis=1)
    observed, diffs = observed / len(blocks), diffs / len(blocks)
    diffs = diffs[np.isfinite(diffs)]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(diffs, [tail, 100 - tail])
    p = min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean()))
    return float(observed), float(low), float(high), float(p)
