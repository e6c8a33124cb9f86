"""FSDKaggle2019 (DCASE 2019 Task 2): 80 classes, multi-label, curated + noisy train sets.

Upstream: Zenodo record 3612637. ``FSDKaggle2019.meta.zip`` holds the ground truth
``*_post_competition.csv`` files (``fname,labels,...``; several labels are one quoted,
comma-separated field) and ``vocabulary.csv``; ``FSDKaggle2019.audio_train_curated.zip``
and ``FSDKaggle2019.audio_test.zip`` the WAV files; the ~20 GB noisy set is a split zip
(``.z01``...``.z06`` + ``.zip``) joined here before extraction. ``include_noisy: false``
skips it.

Checksums: Zenodo publishes an md5 for every file in the record's metadata
(``checksums_url``, its JSON API); they are read from there at download time rather than
copied into this file, because they could not be checked from here (no network). A
mirror (``base_url``) is verified against the same record, or not at all with
``checksums_url: null`` (logged).

Upstream lists a few curated clips as mislabeled and one as silent; they are written to
``known_issues.csv`` (``clip_id,issue``) beside the manifest so the report can flag them.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import pandas as pd
from pydantic import Field

from audiotag.core.config import InputPath, _Strict
from audiotag.core.errors import DataSourceError
from audiotag.core.io import atomic_path
from audiotag.data import common
from audiotag.data.archives import join_split_zip
from audiotag.data.fetch import cache_dir, fetch, obtain
from audiotag.data.folder import parse_labels
from audiotag.data.manifest import join_labels

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://zenodo.org/records/3612637/files"
DEFAULT_CHECKSUMS_URL = "https://zenodo.org/api/records/3612637"
PREFIX = "FSDKaggle2019"
META = f"{PREFIX}.meta.zip"
NOISY_PARTS = [f"{PREFIX}.audio_train_noisy.z{i:02d}" for i in range(1, 7)]
# subset -> (audio archive, ground-truth CSV)
SUBSET_FILES = {
    "curated": (f"{PREFIX}.audio_train_curated.zip", "train_curated_post_competition.csv"),
    "noisy": (f"{PREFIX}.audio_train_noisy.zip", "train_noisy_post_competition.csv"),
    "test": (f"{PREFIX}.audio_test.zip", "test_post_competition.csv"),
}
KNOWN_ISSUES = {  # from the dataset's description on Zenodo ("Known issues")
    "f76181c4": "mislabeled", "77b925c2": "mislabeled", "6a1f682a": "mislabeled",
    "c7db12aa": "mislabeled", "7752cc8a": "mislabeled", "1d44b0bd": "silent",
}
KNOWN_ISSUES_NAME = "known_issues.csv"
_FOLD_STREAMS = {"curated": 31, "noisy": 32}


class FsdKaggle2019Config(_Strict):
    base_url: str = DEFAULT_BASE_URL
    checksums_url: str | None = DEFAULT_CHECKSUMS_URL
    include_noisy: bool = True
    local_dir: InputPath = None
    n_folds: int = Field(5, ge=2)


def published_checksums(url: str | None) -> dict[str, str]:
    """``{file name: "md5:..."}`` from a Zenodo record's JSON (``files[].key/checksum``)."""
    if url is None:
        logger.warning("FSDKaggle2019: data.fsdkaggle2019.checksums_url is null; archives "
                       "are NOT checksum-verified")
        return {}
    path = fetch(url, "record.json", None, "fsdkaggle2019")
    try:
        files = json.loads(path.read_text())["files"]
        return {f["key"]: f["checksum"] for f in files}
    except (ValueError, KeyError, TypeError) as err:
        path.unlink(missing_ok=True)  # do not keep a bad answer in the cache
        raise DataSourceError(f"{url}: not a Zenodo record with file checksums ({err})") from None


def _get(cfg: FsdKaggle2019Config, name: str, sums: dict[str, str]) -> Path:
    if sums and name not in sums:
        raise DataSourceError(f"{cfg.checksums_url}: the record lists no file {name}")
    return obtain(f"{cfg.base_url}/{name}", name, sums.get(name), "fsdkaggle2019",
                  local_dir=common.local(cfg.local_dir))


def _read_tables(cfg: FsdKaggle2019Config, sums: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Ground-truth CSVs by file name, from an extracted meta folder or the meta zip."""
    where = common.local(cfg.local_dir)
    folder = where / f"{PREFIX}.meta" if where is not None else None
    wanted = [csv for _, csv in SUBSET_FILES.values()] + ["vocabulary.csv"]
    tables = {}
    if folder is not None and folder.is_dir():
        for name in wanted:
            if (folder / name).is_file():
                tables[name] = pd.read_csv(folder / name, dtype=str, keep_default_na=False,
                                           header=None if name == "vocabulary.csv" else 0)
        return tables
    archive = _get(cfg, META, sums)
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            name = member.rsplit("/", 1)[-1]
            if name in wanted:
                with zf.open(member) as fh:
                    tables[name] = pd.read_csv(fh, dtype=str, keep_default_na=False,
                                               header=None if name == "vocabulary.csv" else 0)
    return tables


def _audio_source(cfg: FsdKaggle2019Config, subset: str, sums: dict[str, str]) -> Path:
    archive = SUBSET_FILES[subset][0]
    where = common.local(cfg.local_dir)
    folder = where / archive.removesuffix(".zip") if where is not None else None
    if folder is not None and folder.is_dir():
        return folder
    if subset != "noisy":
        return _get(cfg, archive, sums)
    parts = [_get(cfg, name, sums) for name in [*NOISY_PARTS, archive]]
    joined = cache_dir() / "fsdkaggle2019" / f"{PREFIX}.audio_train_noisy.joined.zip"
    if not joined.is_file():
        joined.parent.mkdir(parents=True, exist_ok=True)
        join_split_zip(parts, joined)
    return joined


def write(cfg: FsdKaggle2019Config, out_dir: Path, seed: int) -> tuple[pd.DataFrame, list[str]]:
    sums = published_checksums(cfg.checksums_url)
    tables = _read_tables(cfg, sums)
    subsets = [s for s in SUBSET_FILES if cfg.include_noisy or s != "noisy"]
    frames = []
    for subset in subsets:
        csv = SUBSET_FILES[subset][1]
        if csv not in tables:
            raise DataSourceError(f"{META}: no {csv}")
        table = tables[csv]
        if "fname" not in table.columns or "labels" not in table.columns:
            raise DataSourceError(f"{META}: {csv} lacks the fname/labels columns")
        root = common.unpack(_audio_source(cfg, subset, sums), out_dir,
                             f"fsdkaggle2019/{subset}", keep=lambda n: n.endswith(".wav"))
        found = common.index_audio(root)
        paths = [found.get(f, root / f) for f in table["fname"]]  # missing: screening reports
        frame = pd.DataFrame({
            "clip_id": [Path(f).stem for f in table["fname"]],
            "path": [common.relpath(p, out_dir) for p in paths],
            "labels": [join_labels(parse_labels(t)) for t in table["labels"]],
            "subset": subset, "fold": -1})
        if subset in _FOLD_STREAMS:
            frame["fold"] = common.folds(len(frame), cfg.n_folds, seed, _FOLD_STREAMS[subset])
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    _write_known_issues(df, out_dir)
    return df, _classes(df, tables.get("vocabulary.csv"))


def _classes(df: pd.DataFrame, vocabulary: pd.DataFrame | None) -> list[str]:
    used = {name for text in df["labels"] for name in text.split(";") if name}
    if vocabulary is not None and vocabulary.shape[1] >= 2:
        order = [n for n in vocabulary.iloc[:, 1].astype(str) if n != "label"]
        if used <= set(order):
            return order
    return sorted(used)


def _write_known_issues(df: pd.DataFrame, out_dir: Path) -> None:
    present = set(df["clip_id"])
    rows = [{"clip_id": c, "issue": issue} for c, issue in KNOWN_ISSUES.items() if c in present]
    with atomic_path(out_dir / KNOWN_ISSUES_NAME) as tmp:
        pd.DataFrame(rows, columns=["clip_id", "issue"]).to_csv(tmp, index=False)
    if rows:
        logger.info("FSDKaggle2019: %d clip(s) with known upstream issues -> %s", len(rows),
                    KNOWN_ISSUES_NAME)
