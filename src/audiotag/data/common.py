"""Helpers shared by the downloadable dataset sources."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from audiotag.core.errors import DataSourceError
from audiotag.data.archives import safe_extract

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".au", ".aiff", ".aif")


def place(src: Path, dst: Path) -> str:
    """Put ``src`` at ``dst``: a hard link when they share a filesystem (no second copy
    of a dataset the user already has), else a copy. Returns ``""``, or the problem of a
    file that cannot be read (``unreadable: ...``, for :data:`PROBLEM`). A ``dst`` that
    exists (two clips of one name, or of names that differ only in case on a
    case-insensitive file system) is an error, never overwritten."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        raise DataSourceError(f"{dst}: written twice ({src} has the name of another clip; "
                              "on macOS or Windows, names that differ only in case are one)")
    try:
        os.link(src, dst)
    except OSError:
        try:
            shutil.copy2(src, dst)
        except PermissionError as err:  # on another disk: no link, and the copy reads it
            dst.unlink(missing_ok=True)
            return f"unreadable: {err}"
    return ""


def unpack(archive: Path, out_dir: Path, name: str, keep=None) -> Path:
    """Extract ``archive`` safely into ``out_dir/name``; ``local`` extracted folders are
    linked file by file instead (see :func:`place`)."""
    dest = out_dir / name
    if archive.is_dir():
        files = [p for p in archive.rglob("*") if p.is_file()]
        for p in files:
            rel = p.relative_to(archive).as_posix()
            if keep is None or keep(rel):
                place(p, dest / rel)
        logger.info("linked %d file(s) from %s", len(files), archive)
        return dest
    return safe_extract(archive, dest, keep)


def index_audio(root: Path) -> dict[str, Path]:
    """Basename -> path of every audio file under ``root`` (archive layouts vary)."""
    found: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file():
            found.setdefault(p.name, p)
    return found


def folds(n: int, n_folds: int, seed: int, stream: int) -> np.ndarray:
    """Balanced random folds ``0..n_folds-1`` for ``n`` clips, from their own stream."""
    rng = np.random.default_rng([seed, stream])
    return rng.permutation(np.arange(n) % n_folds)


def relpath(path: Path, out_dir: Path) -> str:
    return path.relative_to(out_dir).as_posix()


def local(local_dir: str | None) -> Path | None:
    if local_dir is None:
        return None
    path = Path(local_dir).expanduser()
    if not path.is_dir():
        raise DataSourceError(f"local_dir {path}: no such directory")
    return path


def read_csv(path: Path, what: str, columns: tuple[str, ...], **kwargs) -> pd.DataFrame:
    """Read a metadata CSV, naming the file when it is missing or lacks a column."""
    if not path.is_file():
        raise DataSourceError(f"{path}: {what} not found")
    try:
        df = pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as err:
        raise DataSourceError(f"{path}: cannot parse {what}: {err}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataSourceError(f"{path}: {what} lacks column(s) {', '.join(missing)}")
    return df


ORIGIN = "origin"
"""Optional manifest column a source may add: where each row came from
(``labels.csv: line 5 (fname='x.wav')``), for messages about the row; build_dataset drops
it before the manifest is written."""

PROBLEM = "problem"
"""Optional manifest column a source may add: why a clip cannot be read (``unreadable:
...``, from :func:`place`); screening lists such clips in ``bad_clips.csv`` without opening
them, and drops the column."""
