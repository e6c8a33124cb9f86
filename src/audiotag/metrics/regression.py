"""Regression metrics per target: Pearson and Spearman correlation, mean squared error.

Pairs where either value is NaN (a clip without that target) are left out. A correlation
is NaN when fewer than two pairs remain or either side is constant.
"""

from __future__ import annotations

import numpy as np


def _pairs(true: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    true = np.asarray(true, dtype=np.float64).ravel()
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"true {true.shape} and predicted {pred.shape} must have equal length")
    keep = np.isfinite(true) & np.isfinite(pred)
    return true[keep], pred[keep]


def _undefined(a: np.ndarray, b: np.ndarray) -> bool:
    """Fewer than two pairs, or a constant side: no correlation (SciPy would warn)."""
    return len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0


def pearson(true: np.ndarray, pred: np.ndarray) -> float:
    """Pearson's r (linear correlation)."""
    a, b = _pairs(true, pred)
    if _undefined(a, b):
        return float("nan")
    from scipy import stats  # on first use: scipy.stats costs a second of CPU to import

    return float(stats.pearsonr(a, b).statistic)


def spearman(true: np.ndarray, pred: np.ndarray) -> float:
    """Spearman's rho: Pearson's r of the ranks (ties get their average rank)."""
    a, b = _pairs(true, pred)
    if _undefined(a, b):
        return float("nan")
    from scipy import stats

    return float(stats.spearmanr(a, b).statistic)


def mse(true: np.ndarray, pred: np.ndarray) -> float:
    a, b = _pairs(true, pred)
    return float(((a - b) ** 2).mean()) if len(a) else float("nan")


def regression_metrics(true: np.ndarray, pred: np.ndarray,
                       names: list[str]) -> dict[str, dict[str, float]]:
    """Per target ``{name: {spearman, pearson, mse, n}}`` for ``(N, T)`` true/predicted."""
    true, pred = np.asarray(true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if true.shape != pred.shape or true.ndim != 2 or true.shape[1] != len(names):
        raise ValueError(f"true {true.shape} and predicted {pred.shape} must be (N, "
                         f"{len(names)}) for targets {names}")
    out = {}
    for i, name in enumerate(names):
        a, _ = _pairs(true[:, i], pred[:, i])
        out[name] = {"spearman": spearman(true[:, i], pred[:, i]),
                     "pearson": pearson(true[:, i], pred[:, i]),
                     "mse": mse(true[:, i], pred[:, i]), "n": int(len(a))}
    return out
