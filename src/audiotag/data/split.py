"""Roles of clips in an experiment: train, valid, test (or unused)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from audiotag.data.config import SplitConfig

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
