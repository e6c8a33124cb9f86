"""The table formats shared by stages: ``;``-separated label lists, ``targets_*`` columns,
and the one way to read and write a CSV of clips.

Clip ids and label lists are text: ``clip_id`` ``007`` stays ``"007"``, a clip named
``NA`` stays ``"NA"`` and an empty label list stays ``""`` (not NaN).
"""

from __future__ import annotations

import os
from typing import IO

import numpy as np
import pandas as pd

from audiotag.core.io import atomic_path

LABEL_SEP = ";"
TARGET_PREFIX = "targets_"  # numeric regression-target columns: targets_valence, ...
TEXT_COLUMNS = {"clip_id": str, "labels": str}
FLOAT_FORMAT = "%.6g"  # scores and metrics tables: 6 significant digits


def split_labels(labels: str | float | None) -> list[str]:
    """``"a;b"`` -> ``["a", "b"]``; empty or NaN -> ``[]``."""
    if labels is None or (isinstance(labels, float) and np.isnan(labels)):
        return []
    return [part.strip() for part in str(labels).split(LABEL_SEP) if part.strip()]


def join_labels(labels: list[str] | tuple[str, ...]) -> str:
    return LABEL_SEP.join(labels)


def labels_to_matrix(labels: pd.Series | list[str], classes: list[str]) -> np.ndarray:
    """Multi-hot matrix ``(n_clips, n_classes)`` float32 from ``;``-separated label strings."""
    index = {name: i for i, name in enumerate(classes)}
    out = np.zeros((len(labels), len(classes)), dtype=np.float32)
    for row, value in enumerate(labels):
        for name in split_labels(value):
            out[row, index[name]] = 1.0
    return out


def read_clip_table(source: str | os.PathLike[str] | IO[str],
                    dtype: dict[str, type] | type | None = None) -> pd.DataFrame:
    """A CSV with ``clip_id`` and ``labels`` columns (the store index, a predictions table,
    a labels file): those two as text, nothing read as NaN; ``dtype`` over that
    (``str``: every column text)."""
    return pd.read_csv(source, dtype=dtype if dtype is not None else TEXT_COLUMNS,
                       keep_default_na=False)


def write_csv(table: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """``table`` atomically as CSV without its index, floats to :data:`FLOAT_FORMAT`."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format=FLOAT_FORMAT)


def rounded(value: float | None, digits: int = 6) -> float | None:
    """A float for a metrics JSON, to ``digits`` decimals; NaN/inf/None -> None (JSON has
    no NaN)."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), digits)
