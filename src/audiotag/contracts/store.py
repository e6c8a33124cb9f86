"""The feature store's tables (``data/features``, written by the features stage): the
index, one row per clip, and the files beside it.

``index.csv``: ``clip_id, subset, row, offset, length, role, fold, labels``, then the
manifest's ``true_labels``, ``weight`` and ``targets_*`` columns where it has them. A clip's
frames are rows ``offset .. offset + length`` of ``<subset>.npy``; ``role`` is ``train``,
``valid`` or ``test`` (the split). Training, evaluation, label cleaning and cross-validation
read it here, torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from audiotag.contracts.tables import TARGET_PREFIX, TEXT_COLUMNS, read_clip_table

INDEX_NAME = "index.csv"
STATS_NAME = "stats.json"   # the training clips' normalisation: shift, scale per band
FEATURES_NAME = "features.json"   # the features config, dim, parts, crop window (frames)
INDEX_COLUMNS = ["clip_id", "subset", "row", "offset", "length", "role", "fold", "labels"]
OPTIONAL_COLUMNS = ("true_labels", "weight")   # kept from the manifest, with targets_*


def index_columns(columns: list[str]) -> list[str]:
    """The columns of a store index built from a table with ``columns``."""
    return INDEX_COLUMNS + [c for c in columns
                            if c in OPTIONAL_COLUMNS or str(c).startswith(TARGET_PREFIX)]


def read_store_index(store: str | os.PathLike[str], roles: tuple[str, ...] | None = None,
                     text: tuple[str, ...] = ()) -> pd.DataFrame:
    """The store's index (``clip_id``, ``labels`` and the ``text`` columns as text), only
    the rows of ``roles`` if given."""
    index = read_clip_table(Path(store) / INDEX_NAME,
                            {**TEXT_COLUMNS, **dict.fromkeys(text, str)})
    if roles is None:
        return index
    return index[index["role"].isin(roles)].reset_index(drop=True)
