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
    roles = np.select([subset == "test", valid, train], ["test", "valid", "train"], "unused")
    return pd.Series(roles, index=manifest.index, name="role")
