"""Free Spoken Digit Dataset (FSDD): spoken digits 0-9, 6 speakers x 50 takes, 8 kHz WAV.

Upstream: github.com/Jakobovski/free-spoken-digit-dataset, the tag archive of v1.0.10.
Recordings are ``recordings/{digit}_{speaker}_{take}.wav``; the official split (upstream
README) takes takes 0-4 of every speaker and digit as the test set and 5-49 for training.
The archive's Python utilities are not extracted. GitHub generates tag archives on the
fly, so their bytes (and checksum) are not stable: upstream publishes none, and the
content is checked instead (file names parse, 3,000 recordings expected).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd
from pydantic import Field

from audiotag.core.errors import DataSourceError
from audiotag.core.params import InputPath, Strict
from audiotag.data import common
from audiotag.data.archives import check_archive
from audiotag.data.fetch import obtain

logger = logging.getLogger(__name__)

DEFAULT_URL = ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/"
               "v1.0.10.tar.gz")
ARCHIVE_NAME = "free-spoken-digit-dataset-1.0.10.tar.gz"
EXPECTED_RECORDINGS = 3000
TEST_TAKES = 5  # takes 0..4 are the official test set
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


class FsddConfig(Strict):
    url: str = DEFAULT_URL
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    local_dir: InputPath = None
    n_folds: int = Field(5, ge=2)


def _archive(cfg: FsddConfig) -> Path:
    """The tarball (downloaded, or from ``local_dir``) or an extracted copy's folder."""
    where = common.local(cfg.local_dir)
    if where is not None:
        for candidate in [where, *sorted(where.glob("free-spoken-digit-dataset*/"))]:
            if (candidate / "recordings").is_dir():
                return candidate
    known = f"sha256:{cfg.sha256}" if cfg.sha256 else None
    fname = cfg.url.rstrip("/").rsplit("/", 1)[-1] or ARCHIVE_NAME
    if where is not None and not (where / fname).is_file() and (where / ARCHIVE_NAME).is_file():
        fname = ARCHIVE_NAME
    return obtain(cfg.url, fname, known, "fsdd", local_dir=where, check=check_archive)


def write(cfg: FsddConfig, out_dir: Path, seed: int) -> tuple[pd.DataFrame, list[str]]:
    del seed  # the official split is fixed; folds come from the take number
    root = common.unpack(_archive(cfg), out_dir, "fsdd",
                         keep=lambda n: "recordings/" in n and n.endswith(".wav"))
    rows = []
    for path in sorted(root.rglob("*.wav")):
        match = _NAME.match(path.name)
        if not match:
            raise DataSourceError(f"{path.name}: not an FSDD recording name "
                                  "({digit}_{speaker}_{take}.wav)")
        digit, speaker, take = match.group(1), match.group(2), int(match.group(3))
        test = take < TEST_TAKES
        rows.append({"clip_id": path.stem, "path": common.relpath(path, out_dir),
                     "labels": digit, "subset": "test" if test else "curated",
                     # take % n_folds: every speaker and digit appears in every fold
                     "fold": -1 if test else take % cfg.n_folds,
                     "speaker": speaker})
    if not rows:
        raise DataSourceError(f"{cfg.url}: no recordings/*.wav in the archive")
    if len(rows) != EXPECTED_RECORDINGS:
        logger.warning("FSDD: %d recordings (v1.0.10 has %d)", len(rows), EXPECTED_RECORDINGS)
    return pd.DataFrame(rows), [str(d) for d in range(10)]
