"""Precomputed features as a dataset: per-clip ``.npy`` arrays and a labels CSV.

The layout accepted (the Greek course's distribution: 128 log-mel bands and 12 chroma bins
averaged between beats, one genre per clip plus numeric targets for multitask learning)::

    <features_dir>/<fname>.npy   one float array per clip, (bands, frames): bands = 140 for
                                 128 mel + 12 chroma (stacked in that order), frames = the
                                 clip's beats (any length; a NumPy .npy, not pickled)
    <csv>                        header + one row per clip: fname (the .npy path relative to
                                 features_dir), <label_column> (its class; several:
                                 comma-separated and quoted), optional subset (train |
                                 curated | noisy | test) and the <target_columns> (numbers;
                                 empty = missing)

The manifest's ``path`` is the array (linked or copied into ``data/raw``), targets become
``targets_<name>`` columns; ``duration_s`` holds the array's frames and ``sample_rate`` 1,
as screening measures them (:func:`probe_array`). Feature extraction reads such a path
as the clip's features (:func:`load_array`): set ``features.kind`` and ``n_mels`` so
their dimension is the arrays' bands (``logmel+chroma`` with ``n_mels: 128``: 140) and
``features.beat_sync: true`` (whole variable-length sequences, never cropped).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from audiotag.core.errors import DataSourceError
from audiotag.core.params import InputPath, Strict
from audiotag.data import common, folder
from audiotag.data.manifest import TARGET_PREFIX, join_labels

ARRAY_SUFFIX = ".npy"


class PrecomputedConfig(Strict):
    features_dir: InputPath = None
    csv: InputPath = None
    label_column: str = Field("genre", min_length=1)
    target_columns: list[str] = Field(default_factory=list)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    n_folds: int = Field(5, ge=2)

    @model_validator(mode="after")
    def _paths_given(self) -> Self:
        if self.features_dir is None or self.csv is None:
            raise ValueError("set both features_dir (the .npy arrays) and csv (fname, "
                             f"{self.label_column}, ...) to use the precomputed source")
        return self


def _target(csv: Path, line: int, fname: str, column: str, text: str) -> float:
    text = text.strip()
    try:
        value = float(text) if text else math.nan
    except ValueError:
        raise folder._row_error(csv, line, fname, f"{column}={text!r} is not a number") from None
    if math.isinf(value):
        raise folder._row_error(csv, line, fname, f"{column}={text!r} is not finite")
    return value


def _row(cfg: PrecomputedConfig, csv: Path, line: int, r: dict, features_dir: Path,
         out_dir: Path, seen: dict) -> dict:
    norm = folder._check_row(csv, line, r["fname"], features_dir)
    if not norm.endswith(ARRAY_SUFFIX):
        raise folder._row_error(csv, line, r["fname"], f"not a {ARRAY_SUFFIX} array")
    folder._check_unique(csv, line, r["fname"], norm, features_dir, seen)
    labels = folder.parse_labels(r[cfg.label_column])
    folder._check_labels(csv, line, r["fname"], labels, None)
    subset = str(r.get("subset", "curated")).strip()
    subset = {"train": "curated"}.get(subset, subset)
    if subset not in ("curated", "noisy", "test"):
        raise folder._row_error(csv, line, r["fname"], f"subset {subset!r} is not one of "
                                "curated, noisy, test (or train)")
    dst = out_dir / "precomputed" / norm
    row = {"clip_id": norm.removesuffix(ARRAY_SUFFIX), "path": common.relpath(dst, out_dir),
           "labels": join_labels(labels), "subset": subset,
           common.PROBLEM: common.place(features_dir / norm, dst),
           common.ORIGIN: f"{csv}: line {line} (fname={r['fname']!r})"}
    for col in cfg.target_columns:
        row[TARGET_PREFIX + col] = _target(csv, line, r["fname"], col, r[col])
    return row


def write(cfg: PrecomputedConfig, out_dir: Path, seed: int) -> tuple[pd.DataFrame, list[str]]:
    features_dir, csv = Path(cfg.features_dir).expanduser(), Path(cfg.csv).expanduser()
    if not features_dir.is_dir():
        raise DataSourceError(f"data.precomputed.features_dir: {features_dir}: no such "
                              "directory")
    folder.scan_csv(csv)
    table = common.read_csv(csv, "labels file", ("fname", cfg.label_column,
                                                  *cfg.target_columns),
                            dtype=str, keep_default_na=False)
    seen: dict[object, tuple[int, str]] = {}
    rows = [_row(cfg, csv, i + 2, r, features_dir, out_dir, seen)  # line 1: the header
            for i, r in enumerate(table.to_dict("records"))]
    if not rows:
        raise DataSourceError(f"{csv}: no clips listed")
    df = folder.split_and_fold(pd.DataFrame(rows), "subset" in table.columns,
                               cfg.test_fraction, cfg.n_folds, seed)
    classes = sorted({name for text in df["labels"] for name in text.split(";") if name})
    if not classes:
        raise DataSourceError(f"{csv}: no labels in column {cfg.label_column!r}")
    return df, classes


def load_array(path: str | os.PathLike[str], dim: int, what: str) -> np.ndarray:
    """A clip's precomputed ``(bands, frames)`` array as features ``(frames, dim)``
    float16; bands other than ``dim`` (the ``what`` settings') stop with the file named."""
    array = np.load(path, allow_pickle=False)
    if array.ndim != 2 or array.shape[0] != dim:
        raise DataSourceError(f"{path}: a precomputed array of shape {array.shape}; {what} "
                              f"expects ({dim}, frames): set features.kind and n_mels to "
                              "the arrays' bands (128 mel + 12 chroma: kind logmel+chroma, "
                              "n_mels 128)")
    return np.ascontiguousarray(array.T.astype(np.float16))
