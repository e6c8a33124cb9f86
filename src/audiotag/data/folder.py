"""A user's own dataset: a directory of audio files plus a CSV in the FSDKaggle2019 format.

The CSV has a header and the columns ``fname,labels`` and optionally ``subset``:
``fname`` is a file path relative to ``audio_dir``; ``labels`` are comma-separated class
names (quote the field when there are several: ``"Bark,Growling"``); ``subset`` is
``curated``, ``noisy`` or ``test`` (``train`` means ``curated``). Without a ``subset``
column a seeded ``test_fraction`` of the clips becomes the test set. An optional
``true_labels`` column (written like ``labels``; empty: the clip holds no sound of the
classes) gives the known clean labels of noisy clips: the manifest's ``true_labels``, which
``clean.method: oracle`` and the detection scores of label cleaning read. Classes are
``classes`` when given (its order; a label outside it is an error), else the sorted set of
all labels, logged with their clip counts; classes with fewer than 2 clips and classes
that differ only in case or spaces (``Low`` beside ``low``, a likely typo) are warned
about. Labels (and ``classes``) are read in Unicode NFC form without invisible format
characters (:func:`normalise_label`). A bad row stops the stage with the CSV's line number.
"""

from __future__ import annotations

import codecs
import csv as csvlib
import io
import logging
import posixpath
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from audiotag.core.errors import DataSourceError
from audiotag.core.params import InputPath, Strict
from audiotag.data import common
from audiotag.data.classes import LABEL_COLUMNS
from audiotag.data.manifest import LABEL_SEP, PREDICTION_COLUMNS, SUBSETS, join_labels

logger = logging.getLogger(__name__)
_TEST_STREAM, _FOLD_STREAM = 21, 22
_SUBSET_ALIASES = {"train": "curated"}


class FolderConfig(Strict):
    audio_dir: InputPath = None
    csv: InputPath = None
    test_fraction: float = Field(0.2, gt=0, lt=1)
    n_folds: int = Field(5, ge=2)
    classes: list[str] | None = None

    @model_validator(mode="after")
    def _paths_given(self) -> Self:
        if self.audio_dir is None or self.csv is None:
            raise ValueError("set both audio_dir (your audio files) and csv (fname,labels"
                             "[,subset]) to use the folder source")
        return self

    @field_validator("classes")
    @classmethod
    def _valid_classes(cls, classes: list[str] | None) -> list[str] | None:
        if classes is None:
            return None
        if not classes:
            raise ValueError("empty list (null derives the classes from the CSV)")
        classes = [normalise_label(name) for name in classes]
        for name in classes:
            if not name or name != name.strip() or LABEL_SEP in name or "," in name:
                raise ValueError(f"invalid class name {name!r} (empty, padded, or contains "
                                 f"{LABEL_SEP!r} or ',')")
        reserved = [name for name in classes if name in PREDICTION_COLUMNS]
        if reserved:
            raise ValueError(_reserved(reserved[0]))
        dup = [n for n, k in Counter(classes).items() if k > 1]
        if dup:
            raise ValueError(f"{dup[0]!r} is listed twice")
        return classes


def _reserved(name: str) -> str:
    return (f"class {name!r} is the name of a column of the predictions tables "
            f"({', '.join(PREDICTION_COLUMNS)}); rename it")


def has_invisible(text: str) -> bool:
    """Whether ``text`` holds a format character (category Cf: zero-width space, BOM, ...)."""
    return any(unicodedata.category(c) == "Cf" for c in text)


def normalise_label(name: str) -> str:
    """``name`` in Unicode NFC form, without format characters (zero-width space, BOM,
    direction marks): what a reader sees, so ``Café`` typed precomposed or
    with a combining accent, or ``mid`` pasted with a zero-width space, is one class."""
    text = unicodedata.normalize("NFC", name)
    return "".join(c for c in text if unicodedata.category(c) != "Cf")


def parse_labels(text: object) -> list[str]:
    """``"Bark, Growling"`` -> ``["Bark", "Growling"]`` (the CSV reader removed the quotes),
    each :func:`normalise_label`-ed."""
    if not isinstance(text, str):
        return []
    return [name for part in text.split(",") if (name := normalise_label(part).strip())]


def _row_error(csv: Path, line: int, fname: object, message: str) -> DataSourceError:
    return DataSourceError(f"{csv}: line {line} (fname={fname!r}): {message}")


def _check_row(csv: Path, line: int, fname: object, audio_dir: Path) -> str:
    """``fname`` as a clean relative POSIX path (``\\`` read as ``/``) of a file in
    ``audio_dir``."""
    if not isinstance(fname, str) or not fname.strip():
        raise _row_error(csv, line, fname, "empty fname")
    norm = posixpath.normpath(fname.replace("\\", "/"))
    if norm.startswith(("/", "../")) or norm == "..":
        raise _row_error(csv, line, fname, "fname must be relative to audio_dir")
    if (audio_dir / norm).is_dir():
        raise _row_error(csv, line, fname, "is a directory, not an audio file")
    if not (audio_dir / norm).is_file():
        raise _row_error(csv, line, fname, f"no such file in {audio_dir}")
    return norm


_DUPLICATE = {
    "file": "same file as line {line} (fname={name!r})",
    "clip": "a different file with the same clip id {clip!r} as line {line} (fname={name!r}): "
            "clip ids leave out the extension; rename one of the files",
    "case": "differs from line {line} (fname={name!r}) only in case: one file in data/raw on a "
            "case-insensitive file system (macOS, Windows); rename one",
}


def _check_unique(csv: Path, line: int, fname: str, norm: str, audio_dir: Path,
                  seen: dict[object, tuple[int, str]]) -> None:
    """A file listed twice (under two spellings, a symlink or a hard link: found by device
    and inode), two files of one clip id (``a.wav``, ``a.flac``) or two names that differ
    only in case (one file where the copy lands on macOS or Windows) are refused."""
    info = (audio_dir / norm).stat()  # follows a symlink
    clip = posixpath.splitext(norm)[0]
    for what, key in (("file", (info.st_dev, info.st_ino)), ("clip", clip),
                      ("case", norm.casefold())):
        if (what, key) in seen:
            first, first_name = seen[what, key]
            raise _row_error(csv, line, fname, _DUPLICATE[what].format(
                line=first, name=first_name, clip=clip))
        seen[what, key] = (line, fname)


def _check_labels(csv: Path, line: int, fname: str, labels: list[str],
                  classes: list[str] | None, column: str = "labels") -> None:
    """A label with ``;`` (the manifest's separator), outside ``classes`` (when given), or
    named like a column of the predictions tables stops the stage naming the line (and the
    column, for ``true_labels``)."""
    what = "label" if column == "labels" else f"{column}: label"
    bad = [name for name in labels if LABEL_SEP in name]
    if bad:
        raise _row_error(csv, line, fname, f"{what} {bad[0]!r} contains {LABEL_SEP!r}")
    unknown = [name for name in labels if classes is not None and name not in classes]
    if unknown:
        raise _row_error(csv, line, fname, f"{what} {unknown[0]!r} is not in "
                         "data.folder.classes")
    reserved = [name for name in labels if name in PREDICTION_COLUMNS]
    if reserved:
        raise _row_error(csv, line, fname, _reserved(reserved[0]))


def _decode(csv: Path, data: bytes) -> str:
    """The CSV's text (UTF-8, a byte-order mark allowed); another encoding is refused,
    naming the line of the first byte that is not UTF-8 and what the file looks like."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataSourceError(f"{csv}: not UTF-8 but UTF-16 (it starts with a UTF-16 "
                              "byte-order mark); save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        try:
            data.decode("cp1252")
            guess = " (this looks like Latin-1 or Windows-1252)"
        except UnicodeDecodeError:
            guess = ""
        raise DataSourceError(f"{csv}: line {line}: not UTF-8 (byte 0x{data[err.start]:02x}); "
                              f"save it as UTF-8{guess}") from None


def scan_csv(csv: Path) -> None:
    """Refuse what the table reader would misread: a file that is not UTF-8, a row with
    more fields than the header (an unquoted ``Bark,Growling`` shifts the columns), a
    quoted field with a line break (one row over two lines)."""
    if not csv.is_file():
        return  # read_csv names the missing file
    reader = csvlib.reader(io.StringIO(_decode(csv, csv.read_bytes()), newline=""))
    header = next(reader, [])
    start = reader.line_num + 1
    for fields in reader:
        line, start = start, reader.line_num + 1
        if len(fields) > len(header):
            raise DataSourceError(
                f"{csv}: line {line}: {len(fields)} fields, but the header has {len(header)} "
                f"({', '.join(header)}): quote a labels field with several names, e.g. "
                '"Bark,Growling"')
        broken = [field for field in fields if "\n" in field or "\r" in field]
        if broken:
            raise DataSourceError(f"{csv}: line {line}: a quoted field holds a line break "
                                  f"({broken[0]!r}); a file name or label is one line")


def _read_rows(cfg: FolderConfig, csv: Path, audio_dir: Path, out_dir: Path,
               table: pd.DataFrame) -> tuple[list[dict], list[int]]:
    """One manifest row per CSV row (files placed under ``out_dir``), and the lines whose
    labels held invisible characters."""
    rows: list[dict] = []
    seen: dict[object, tuple[int, str]] = {}
    invisible: list[int] = []
    for i, r in enumerate(table.to_dict("records")):
        line = i + 2  # a header line, and people count from 1
        norm = _check_row(csv, line, r["fname"], audio_dir)
        _check_unique(csv, line, r["fname"], norm, audio_dir, seen)
        found = {}
        for col in [c for c in LABEL_COLUMNS if c in r]:
            labels = parse_labels(r[col])
            if isinstance(r[col], str) and has_invisible(r[col]):
                invisible.append(line)
            _check_labels(csv, line, r["fname"], labels, cfg.classes, col)
            found[col] = join_labels(labels)
        subset = str(r.get("subset", "curated")).strip()
        subset = _SUBSET_ALIASES.get(subset, subset)
        if subset not in SUBSETS:
            raise _row_error(csv, line, r["fname"],
                             f"subset {subset!r} is not one of {', '.join(SUBSETS)} (or train)")
        dst = out_dir / "folder" / norm
        problem = common.place(audio_dir / norm, dst)  # an unreadable file: bad_clips.csv
        rows.append({"clip_id": posixpath.splitext(norm)[0],
                     "path": common.relpath(dst, out_dir), **found, "subset": subset,
                     common.PROBLEM: problem,
                     common.ORIGIN: f"{csv}: line {line} (fname={r['fname']!r})"})
    return rows, sorted(set(invisible))


def write(cfg: FolderConfig, out_dir: Path, seed: int) -> tuple[pd.DataFrame, list[str]]:
    audio_dir, csv = Path(cfg.audio_dir).expanduser(), Path(cfg.csv).expanduser()
    if not audio_dir.is_dir():
        raise DataSourceError(f"data.folder.audio_dir: {audio_dir}: no such directory")
    scan_csv(csv)
    table = common.read_csv(csv, "clip list", ("fname", "labels"), dtype=str,
                            keep_default_na=False)
    rows, invisible = _read_rows(cfg, csv, audio_dir, out_dir, table)
    if not rows:
        raise DataSourceError(f"{csv}: no clips listed")
    if invisible:
        logger.warning("%s: invisible characters removed from the labels of line %s",
                       csv, ", ".join(map(str, invisible)))
    df = split_and_fold(pd.DataFrame(rows), "subset" in table.columns, cfg.test_fraction,
                        cfg.n_folds, seed)
    counts = Counter(name for text in df["labels"] for name in text.split(LABEL_SEP) if name)
    if not counts:
        raise DataSourceError(f"{csv}: no labels at all")
    if cfg.classes is not None:
        unused = [name for name in cfg.classes if name not in counts]
        if unused:
            logger.warning("%s: no clip has class(es) %s of data.folder.classes", csv,
                           ", ".join(unused))
        return df, list(cfg.classes)
    classes = sorted(counts)
    _flag_classes(csv, classes, counts)
    _check_true_labels(df, classes)
    return df, classes


def _check_true_labels(df: pd.DataFrame, classes: list[str]) -> None:
    """Classes derived from ``labels``: a true label that no clip is labelled with is no
    class (the manifest could not hold it); stop naming its line."""
    if "true_labels" not in df.columns:
        return
    known = set(classes)
    for text, origin in zip(df["true_labels"], df[common.ORIGIN], strict=True):
        unknown = [name for name in text.split(LABEL_SEP) if name and name not in known]
        if unknown:
            raise DataSourceError(f"{origin}: true_labels: {unknown[0]!r} is the label of no "
                                  "clip, so no class; list it in data.folder.classes")


def split_and_fold(df: pd.DataFrame, has_subset: bool, test_fraction: float, n_folds: int,
                   seed: int) -> pd.DataFrame:
    """Without a subset column, a seeded ``test_fraction`` of the clips becomes the test
    set; the other clips get seeded balanced folds ``0..n_folds-1`` (test clips -1)."""
    if not has_subset:
        rng = np.random.default_rng([seed, _TEST_STREAM])
        n_test = max(1, round(test_fraction * len(df)))
        df.loc[rng.permutation(len(df))[:n_test], "subset"] = "test"
    train = df["subset"].ne("test").to_numpy()
    df["fold"] = -1
    df.loc[train, "fold"] = common.folds(int(train.sum()), n_folds, seed, _FOLD_STREAM)
    return df


def _flag_classes(csv: Path, classes: list[str], counts: Counter) -> None:
    """Log the clips per class; warn about rare ones and look-alikes (likely typos)."""
    logger.info("%s: %d classes derived from the labels (no data.folder.classes); clips per "
                "class: %s", csv, len(classes), ", ".join(f"{c} {counts[c]}" for c in classes))
    rare = [c for c in classes if counts[c] < 2]
    if rare:
        logger.warning("%s: class(es) with fewer than 2 clips: %s", csv, ", ".join(rare))
    groups: dict[str, list[str]] = {}
    for name in classes:
        plain = unicodedata.normalize("NFKC", name)  # full-width letters, ligatures, ...
        groups.setdefault(re.sub(r"[\s_]+", " ", plain).strip().casefold(), []).append(name)
    alike = [" / ".join(repr(n) for n in names) for names in groups.values() if len(names) > 1]
    if alike:
        logger.warning("%s: classes that differ only in case or spaces: %s (a typo? list the "
                       "real ones in data.folder.classes to make other labels errors)", csv,
                       "; ".join(alike))
