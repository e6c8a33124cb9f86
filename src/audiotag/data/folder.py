"""A user's own dataset: a directory of audio files plus a CSV in the FSDKaggle2019 format.

The CSV has a header and the columns ``fname,labels`` and optionally ``subset``:
``fname`` is a file path relative to ``audio_dir``; ``labels`` are comma-separated class
names (quote the field when there are several: ``"Bark,Growling"``); ``subset`` is
``curated``, ``noisy`` or ``test`` (``train`` means ``curated``). Without a ``subset``
column a seeded ``test_fraction`` of the clips becomes the test set. Classes are the
sorted set of all labels. A bad row stops the stage with the CSV's line number.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from audiotag.core.config import InputPath, _Strict
from audiotag.core.errors import DataSourceError
from audiotag.data import common
from audiotag.data.manifest import LABEL_SEP, SUBSETS, join_labels

_TEST_STREAM, _FOLD_STREAM = 21, 22
_SUBSET_ALIASES = {"train": "curated"}


class FolderConfig(_Strict):
    audio_dir: InputPath = None
    csv: InputPath = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    n_folds: int = Field(5, ge=2)

    @model_validator(mode="after")
    def _paths_given(self) -> Self:
        if self.audio_dir is None or self.csv is None:
            raise ValueError("set both audio_dir (your audio files) and csv (fname,labels"
                             "[,subset]) to use the folder source")
        return self


def parse_labels(text: object) -> list[str]:
    """``"Bark, Growling"`` -> ``["Bark", "Growling"]`` (the CSV reader removed the quotes)."""
    if not isinstance(text, str):
        return []
    return [part.strip() for part in text.split(",") if part.strip()]


def _row_error(csv: Path, line: int, fname: object, message: str) -> DataSourceError:
    return DataSourceError(f"{csv}: line {line} (fname={fname!r}): {message}")


def _check_row(csv: Path, line: int, fname: object, audio_dir: Path) -> Path:
    if not isinstance(fname, str) or not fname.strip():
        raise _row_error(csv, line, fname, "empty fname")
    norm = posixpath.normpath(fname.replace("\\", "/"))
    if norm.startswith(("/", "../")) or norm == "..":
        raise _row_error(csv, line, fname, "fname must be relative to audio_dir")
    path = audio_dir / norm
    if not path.is_file():
        raise _row_error(csv, line, fname, f"no such file in {audio_dir}")
    return path


def write(cfg: FolderConfig, out_dir: Path, seed: int) -> tuple[pd.DataFrame, list[str]]:
    audio_dir, csv = Path(cfg.audio_dir).expanduser(), Path(cfg.csv).expanduser()
    if not audio_dir.is_dir():
        raise DataSourceError(f"data.folder.audio_dir: {audio_dir}: no such directory")
    table = common.read_csv(csv, "clip list", ("fname", "labels"), dtype=str,
                            keep_default_na=False)
    has_subset = "subset" in table.columns
    rows, seen = [], {}
    for i, r in enumerate(table.to_dict("records")):
        line = i + 2  # a header line, and people count from 1
        src = _check_row(csv, line, r["fname"], audio_dir)
        clip_id = posixpath.splitext(posixpath.normpath(r["fname"]))[0]
        if clip_id in seen:
            raise _row_error(csv, line, r["fname"], f"same clip as line {seen[clip_id]}")
        seen[clip_id] = line
        labels = parse_labels(r["labels"])
        bad = [name for name in labels if LABEL_SEP in name]
        if bad:
            raise _row_error(csv, line, r["fname"], f"label {bad[0]!r} contains {LABEL_SEP!r}")
        subset = str(r.get("subset", "curated")).strip()
        subset = _SUBSET_ALIASES.get(subset, subset)
        if subset not in SUBSETS:
            raise _row_error(csv, line, r["fname"],
                             f"subset {subset!r} is not one of {', '.join(SUBSETS)} (or train)")
        dst = out_dir / "folder" / posixpath.normpath(r["fname"])
        common.place(src, dst)
        rows.append({"clip_id": clip_id, "path": common.relpath(dst, out_dir),
                     "labels": join_labels(labels), "subset": subset})
    if not rows:
        raise DataSourceError(f"{csv}: no clips listed")
    df = pd.DataFrame(rows)
    if not has_subset:
        rng = np.random.default_rng([seed, _TEST_STREAM])
        n_test = max(1, round(cfg.test_fraction * len(df)))
        df.loc[rng.permutation(len(df))[:n_test], "subset"] = "test"
    train = df["subset"].ne("test").to_numpy()
    df["fold"] = -1
    df.loc[train, "fold"] = common.folds(int(train.sum()), cfg.n_folds, seed, _FOLD_STREAM)
    classes = sorted({name for text in df["labels"] for name in text.split(LABEL_SEP) if name})
    if not classes:
        raise DataSourceError(f"{csv}: no labels at all")
    return df, classes
