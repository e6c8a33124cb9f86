"""The manifest: the one table every dataset source writes and every later stage reads.

A manifest directory holds ``manifest.csv`` (one row per clip) and ``classes.txt`` (one
class name per line; its order fixes the column order of every label matrix).

Columns:
    clip_id      unique, non-empty
    path         audio file, relative to the manifest's directory (or absolute)
    labels       ``;``-separated class names; may be empty (unlabeled or all-negative clip)
    subset       ``curated`` | ``noisy`` | ``test``
    fold         integer; cross-validation fold of a train clip, -1 for test clips
    duration_s   > 0
    sample_rate  > 0
Optional: ``true_labels`` (known clean labels of noisy clips, to score label cleaning),
``weight`` (per-clip training loss weight >= 0, written by label cleaning; 1 when absent),
numeric ``targets_*`` columns (regression targets; empty where unknown), and
``source_id``, ``speaker`` and other grouping columns (kept as they are).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from audiotag.contracts.tables import (  # the label-list format, shared by every table
    LABEL_SEP,
    TARGET_PREFIX,
    TEXT_COLUMNS,
    join_labels,  # noqa: F401 (re-exported: data sources write label lists with it)
    labels_to_matrix,  # noqa: F401 (re-exported)
    read_clip_table,
    split_labels,
)
from audiotag.core.errors import ManifestError
from audiotag.core.io import atomic_path, write_text

SUBSETS = ("curated", "noisy", "test")
REQUIRED_COLUMNS = ("clip_id", "path", "labels", "subset", "fold", "duration_s", "sample_rate")
MANIFEST_NAME = "manifest.csv"
CLASSES_NAME = "classes.txt"
PREDICTION_COLUMNS = ("clip_id", "labels", "path", "tags")
"""Columns of the predictions tables beside one column per class (evaluate's per-clip
``clip_id, labels``, predict's ``path, tags``): no class may take one of these names."""


def _show(value: object) -> str:
    """A cell for an error message: strings quoted, numbers plain (not ``np.float64(..)``)."""
    return repr(value) if isinstance(value, str) else str(value)


def _fail(where: str, df: pd.DataFrame, row: int, message: str) -> ManifestError:
    clip = df["clip_id"].iloc[row] if "clip_id" in df.columns else "?"
    # +2: a header line, and people count CSV lines from 1
    return ManifestError(f"{where}: line {row + 2} (clip_id={clip!r}): {message}")


def validate_manifest(df: pd.DataFrame, classes: list[str], where: str = MANIFEST_NAME) -> None:
    """Raise :class:`ManifestError` naming the first offending row, or return None."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{where}: missing column(s) {', '.join(missing)}")
    if not classes:
        raise ManifestError(f"{where}: the class list is empty")
    if len(set(classes)) != len(classes):
        raise ManifestError(f"{where}: duplicate class names in {CLASSES_NAME}")
    bad_class = [c for c in classes if not c or LABEL_SEP in c or c != c.strip()
                 or c in PREDICTION_COLUMNS]
    if bad_class:
        raise ManifestError(f"{where}: invalid class name {bad_class[0]!r} in {CLASSES_NAME} "
                            f"(empty, padded, with {LABEL_SEP!r}, or a column of the "
                            f"predictions tables: {', '.join(PREDICTION_COLUMNS)})")

    ids = df["clip_id"].astype(str)
    for row in np.flatnonzero(ids.str.strip().eq("") | df["clip_id"].isna()):
        raise _fail(where, df, row, "empty clip_id")
    for row in np.flatnonzero(ids.duplicated().to_numpy()):
        raise _fail(where, df, row, "duplicate clip_id")
    for row in np.flatnonzero(df["path"].isna().to_numpy() | df["path"].astype(str).eq("")):
        raise _fail(where, df, row, "empty path")
    for row in np.flatnonzero(~df["subset"].isin(SUBSETS).to_numpy()):
        raise _fail(where, df, row, f"subset {df['subset'].iloc[row]!r} not in {SUBSETS}")
    for col, positive in (("fold", False), ("duration_s", True), ("sample_rate", True)):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | ((values <= 0) if positive else False)
        if col == "fold":
            bad = bad | (values != values.round())
        for row in np.flatnonzero(bad.to_numpy()):
            rule = "a positive number" if positive else "an integer"
            raise _fail(where, df, row, f"{col}={df[col].iloc[row]} is not {rule}")
    if "weight" in df.columns:
        values = pd.to_numeric(df["weight"], errors="coerce")
        for row in np.flatnonzero((values.isna() | (values < 0) | np.isinf(values)).to_numpy()):
            raise _fail(where, df, row, f"weight={_show(df['weight'].iloc[row])} is not a "
                                        "finite number >= 0")
    for col in [c for c in df.columns if str(c).startswith(TARGET_PREFIX)]:
        text = df[col].astype(str).str.strip()
        values = pd.to_numeric(df[col], errors="coerce")
        bad = (values.isna() & ~(text.eq("") | text.eq("nan") | df[col].isna())) | np.isinf(values)
        for row in np.flatnonzero(bad.to_numpy()):
            raise _fail(where, df, row, f"{col}={_show(df[col].iloc[row])} is not a number")
    known = set(classes)
    for label_col in [c for c in ("labels", "true_labels") if c in df.columns]:
        for row, value in enumerate(df[label_col]):
            unknown = [name for name in split_labels(value) if name not in known]
            if unknown:
                raise _fail(where, df, row, f"{label_col}: unknown class {unknown[0]!r}")


def write_manifest(df: pd.DataFrame, classes: list[str], out_dir: str | os.PathLike[str]) -> None:
    """Validate, then write ``manifest.csv`` and ``classes.txt`` atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    validate_manifest(df, classes, where=str(out_dir / MANIFEST_NAME))
    write_text(out_dir / CLASSES_NAME, "\n".join(classes) + "\n")
    with atomic_path(out_dir / MANIFEST_NAME) as tmp:
        df.to_csv(tmp, index=False)


def read_classes(path: str | os.PathLike[str]) -> list[str]:
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


def read_manifest(manifest_dir: str | os.PathLike[str]) -> tuple[pd.DataFrame, list[str]]:
    """Read and validate a manifest directory; returns ``(manifest, classes)``."""
    manifest_dir = Path(manifest_dir)
    path = manifest_dir / MANIFEST_NAME
    if not path.exists():
        raise ManifestError(f"{path}: no such file")
    df = read_clip_table(path, {**TEXT_COLUMNS, "true_labels": str, "path": str})
    classes = read_classes(manifest_dir / CLASSES_NAME)
    validate_manifest(df, classes, where=str(path))
    df["fold"] = df["fold"].astype(int)
    numeric = [c for c in df.columns if c == "weight" or str(c).startswith(TARGET_PREFIX)]
    for col in numeric:  # "" (unknown target) -> NaN
        df[col] = pd.to_numeric(df[col].replace("", np.nan)).astype(float)
    return df, classes


def audio_paths(df: pd.DataFrame, manifest_dir: str | os.PathLike[str]) -> list[Path]:
    """Absolute audio paths of a manifest's rows (relative paths are from its directory)."""
    root = Path(manifest_dir).resolve()
    return [Path(p) if os.path.isabs(p) else Path(os.path.normpath(root / p)) for p in df["path"]]


def rebase_paths(df: pd.DataFrame, src_dir: str | os.PathLike[str],
                 dst_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Copy of ``df`` whose relative paths point at the same files from ``dst_dir``."""
    out = df.copy()
    src, dst = Path(src_dir).resolve(), Path(dst_dir).resolve()
    out["path"] = [
        p if os.path.isabs(p) else os.path.relpath(src / p, dst) for p in df["path"]
    ]
    return out
