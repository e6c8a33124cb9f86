"""Roles of clips in an experiment: train, valid, test (or unused)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from audiotag.core.errors import ParamsError
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import labels_to_matrix

ROLES = ("train", "valid", "test", "unused")


def assign_roles(manifest: pd.DataFrame, cfg: SplitConfig) -> pd.Series:
    """One role per row.

    ``test`` subset -> test; a clip of ``valid_subsets`` in fold ``valid_fold`` -> valid;
    any other clip of ``train_subsets`` -> train; the rest (e.g. noisy clips when only
    curated ones train) -> unused. Validation clips never train, so early stopping and
    checkpoint choice see unseen clips.
    """
    subset = manifest["subset"].to_numpy()
    fold = manifest["fold"].to_numpy()
    valid = np.isin(subset, cfg.valid_subsets) & (fold == cfg.valid_fold)
    train = np.isin(subset, cfg.train_subsets) & ~valid
    if cfg.fraction < 1:
        train &= keep_fraction(manifest, train, cfg.fraction, cfg.fraction_seed)
    roles = np.select([subset == "test", valid, train], ["test", "valid", "train"], "unused")
    return pd.Series(roles, index=manifest.index, name="role")


def keep_fraction(manifest: pd.DataFrame, candidates: np.ndarray, fraction: float,
                  seed: int) -> np.ndarray:
    """``(rows,)`` mask: a seeded ``fraction`` of the ``candidates`` rows, stratified.

    Strata are (subset, the clip's rarest label among the candidates): each keeps
    ``round(fraction * n)`` clips, at least one, so class and curated/noisy proportions
    stay and no class disappears from training (multi-label clips count for their rarest
    class, the usual iterative-stratification shortcut). Unlabelled clips form a stratum.
    """
    labels = manifest["labels"].fillna("").astype(str).str.split(";")
    labels = labels.apply(lambda names: [n for n in names if n])
    counts = pd.Series([n for names, c in zip(labels, candidates, strict=True) if c
                        for n in names]).value_counts()
    rarest = labels.apply(lambda names: min(names, key=lambda n: (counts.get(n, 0), n))
                          if names else "")
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(manifest), dtype=bool)
    strata = pd.DataFrame({"subset": manifest["subset"].to_numpy(), "rarest": rarest.to_numpy(),
                           "row": np.arange(len(manifest))})[candidates]
    for _, group in sorted(strata.groupby(["subset", "rarest"]), key=lambda kv: kv[0]):
        rows = group["row"].to_numpy()
        n = max(1, round(fraction * len(rows)))
        keep[rng.permutation(rows)[:n]] = True
    return keep


def iterative_stratification(targets: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold ``0..k-1`` of each row of the multi-hot ``targets`` ``(N, C)``: multi-label
    iterative stratification (Sechidis, Tsoumakas & Vlahavas 2011, Algorithm 1), seeded.

    Each fold wants ``N / k`` rows and ``n_c / k`` rows of every class ``c``. The class with
    the fewest rows still unassigned goes first (rare classes are the hard ones to spread):
    each of its rows, in a seeded random order, joins the fold that still wants most rows
    of that class (ties: the fold that wants most rows overall, then a seeded draw), and
    that fold's wants of each of the row's classes drop by one. Rows without a label fill
    the folds that want most rows. With one label per row this is stratified k-fold: each
    class's rows are dealt to the folds in turn (per-fold counts differ by at most one).
    """
    y = np.asarray(targets) > 0
    n = y.shape[0]
    rng = np.random.default_rng(seed)
    folds = np.full(n, -1, dtype=np.int64)
    wants = np.full(k, n / k)  # (k,) rows each fold still wants
    wants_class = np.tile(y.sum(axis=0) / k, (k, 1))  # (k, C)

    def pick(scores: np.ndarray) -> int:
        best = np.flatnonzero(scores == scores.max())
        best = best[wants[best] == wants[best].max()]
        return int(best[0] if len(best) == 1 else rng.choice(best))

    def place(row: int, fold: int) -> None:
        folds[row] = fold
        wants[fold] -= 1
        wants_class[fold, y[row]] -= 1

    while True:
        left = (y & (folds < 0)[:, None]).sum(axis=0)  # (C,) unassigned rows per class
        if not left.any():
            break
        rarest = np.flatnonzero(left == left[left > 0].min())
        label = int(rarest[0] if len(rarest) == 1 else rng.choice(rarest))
        for row in rng.permutation(np.flatnonzero(y[:, label] & (folds < 0))):
            place(int(row), pick(wants_class[:, label]))
    for row in rng.permutation(np.flatnonzero(folds < 0)):  # rows without a label
        place(int(row), pick(wants))
    return folds


def assign_folds(pool: pd.DataFrame, classes: list[str], k: int, seed: int,
                 key: str) -> np.ndarray:
    """Fold ``0..k-1`` of each row of ``pool`` (columns ``labels``, ``subset``): iterative
    stratification within each subset (``cv``'s folds and the cleaning detector's). ``k``
    above the clips of the rarest class (or of the pool) is an error naming the params
    ``key`` that set it: some fold would hold none of that class."""
    if len(pool) < k:
        raise ParamsError(f"{key}={k}: only {len(pool)} training clips to split into {k} folds")
    targets = labels_to_matrix(pool["labels"], classes)  # (N, C)
    counts = targets.sum(axis=0).astype(int)
    present = np.flatnonzero(counts > 0)
    if len(present):
        rarest = present[np.argmin(counts[present])]
        if counts[rarest] < k:
            raise ParamsError(
                f"{key}={k}: class {classes[rarest]!r} has only {counts[rarest]} training "
                f"clip(s), so some of the {k} folds would hold none; set {key} to at most "
                f"{counts[rarest]}")
    folds = np.empty(len(pool), dtype=np.int64)
    subsets = pool["subset"].to_numpy()
    for subset in sorted(set(subsets)):
        rows = np.flatnonzero(subsets == subset)
        folds[rows] = iterative_stratification(targets[rows], k, seed)
    return folds
