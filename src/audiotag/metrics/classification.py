"""Classification metrics beyond lwlrap: average precision, thresholded F1, single-label
accuracy, per-class precision/recall/F1 and the confusion matrix.

Plain NumPy so every definition is visible here; ``tests/test_evaluate.py`` checks each
against scikit-learn on random data. Shapes: ``N`` clips, ``C`` classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# candidate thresholds for the F1 of multi-label predictions (tuned on validation clips)
THRESHOLD_GRID = np.round(np.arange(0.02, 0.99, 0.02), 2)


def _check(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth) > 0
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ValueError(f"truth {truth.shape} and scores {scores.shape} must be equal (N, C)")
    return truth, scores


def average_precision(truth: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-class average precision ``(C,)``; NaN for a class without positives.

    AP = sum over the positives of precision at their rank, divided by the positives;
    tied scores are one threshold (as scikit-learn's ``average_precision_score``).
    """
    truth, scores = _check(truth, scores)
    out = np.full(truth.shape[1], np.nan)
    for c in range(truth.shape[1]):
        positives = truth[:, c].sum()
        if positives == 0:
            continue
        order = np.argsort(-scores[:, c], kind="mergesort")
        s, t = scores[order, c], truth[order, c]
        last_of_tie = np.r_[s[1:] != s[:-1], True]  # thresholds sit after each tie group
        tp = np.cumsum(t)[last_of_tie]
        seen = np.flatnonzero(last_of_tie) + 1
        precision = tp / seen
        recall_gain = np.diff(np.r_[0, tp]) / positives
        out[c] = float((precision * recall_gain).sum())
    return out


@dataclass(frozen=True)
class PRF:
    """Precision, recall, F1 and support per class, and their averages."""

    precision: np.ndarray  # (C,)
    recall: np.ndarray  # (C,)
    f1: np.ndarray  # (C,)
    support: np.ndarray  # (C,) true instances per class
    averages: dict[str, dict[str, float]]  # {"micro"|"macro"|"weighted": {precision, recall, f1}}


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den with 0 where den == 0 (scikit-learn's ``zero_division=0``)."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def prf_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> PRF:
    """Per-class and averaged precision/recall/F1 from per-class counts ``(C,)``.

    micro: from the summed counts; macro: unweighted mean over classes; weighted: mean
    weighted by support. Undefined ratios count as 0 (scikit-learn's ``zero_division=0``).
    """
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * precision * recall, precision + recall)
    support = tp + fn
    p_mi = float(_ratio(tp.sum(), tp.sum() + fp.sum()))
    r_mi = float(_ratio(tp.sum(), support.sum()))
    averages = {
        "micro": {"precision": p_mi, "recall": r_mi,
                  "f1": float(_ratio(2 * p_mi * r_mi, p_mi + r_mi))},
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()),
                  "f1": float(f1.mean())},
    }
    weights = support / max(support.sum(), 1)
    averages["weighted"] = {"precision": float((precision * weights).sum()),
                            "recall": float((recall * weights).sum()),
                            "f1": float((f1 * weights).sum())}
    return PRF(precision, recall, f1, support.astype(int), averages)


def multilabel_prf(truth: np.ndarray, scores: np.ndarray, threshold: float) -> PRF:
    """Precision/recall/F1 of the multi-label decision ``score >= threshold``."""
    truth, scores = _check(truth, scores)
    pred = scores >= threshold
    tp = (pred & truth).sum(axis=0)
    fp = (pred & ~truth).sum(axis=0)
    fn = (~pred & truth).sum(axis=0)
    return prf_from_counts(tp, fp, fn)


def tune_threshold(truth: np.ndarray, scores: np.ndarray,
                   grid: np.ndarray = THRESHOLD_GRID) -> tuple[float, float]:
    """The one global threshold of ``grid`` with the best micro F1: ``(threshold, f1)``.

    Ties go to the threshold nearest 0.5, so a flat F1 curve gives the natural choice.
    """
    best = max(grid, key=lambda t: (multilabel_prf(truth, scores, t).averages["micro"]["f1"],
                                    -abs(t - 0.5)))
    return float(best), multilabel_prf(truth, scores, best).averages["micro"]["f1"]


def singlelabel_prf(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> PRF:
    """Per-class precision/recall/F1 of single-label predictions (class indices ``(N,)``).

    Micro averages equal the accuracy, as in scikit-learn.
    """
    matrix = confusion_matrix(actual, predicted, n_classes)
    tp = np.diag(matrix)
    return prf_from_counts(tp, matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp)


def confusion_matrix(actual: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, C)`` counts; rows are the actual class, columns the predicted one."""
    actual, predicted = np.asarray(actual, dtype=int), np.asarray(predicted, dtype=int)
    if actual.shape != predicted.shape or actual.ndim != 1:
        raise ValueError(f"actual {actual.shape} and predicted {predicted.shape} must be (N,)")
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (actual, predicted), 1)
    return matrix


def accuracy(actual: np.ndarray, predicted: np.ndarray) -> float:
    actual, predicted = np.asarray(actual), np.asarray(predicted)
    if not len(actual):
        raise ValueError("accuracy of no clips is undefined")
    return float((actual == predicted).mean())


def single_label_rows(truth: np.ndarray) -> np.ndarray:
    """Boolean ``(N,)``: the clips with exactly one true label."""
    return (np.asarray(truth) > 0).sum(axis=1) == 1
