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
mirror (``base_url``) is asked first for its own copy of the record (``record.json``) or
an md5 list (``md5sums.txt``, ``MD5SUMS``: ``<md5>  <file name>`` lines), then Zenodo;
``checksums_file`` (a local record JSON or md5 list) needs no network at all, and
``checksums_url: null`` skips verification (logged). Without a checksum every archive's
content is checked instead (zip CRCs), the split zip's once joined.

Upstream lists a few curated clips as mislabeled and one as silent; they are written to
``known_issues.csv`` (``clip_id,issue``) beside the manifest so the report can flag them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
from pathlib import Path

import pandas as pd
from pydantic import Field

from audiotag.core.errors import DataSourceError
from audiotag.core.io import atomic_path, write_text
from audiotag.core.params import InputPath, Strict
from audiotag.data import common
from audiotag.data.archives import check_archive, check_zip, join_split_zip, parts_holding
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
MIRROR_CHECKSUMS = ("record.json", "md5sums.txt", "MD5SUMS")
"""Checksum files looked for beside the archives on a mirror (``base_url``)."""
_MD5_LINE = re.compile(r"([0-9a-fA-F]{32})\s+\*?(\S.*)")


class FsdKaggle2019Config(Strict):
    base_url: str = DEFAULT_BASE_URL
    checksums_url: str | None = DEFAULT_CHECKSUMS_URL
    checksums_file: InputPath = None
    include_noisy: bool = True
    local_dir: InputPath = None
    n_folds: int = Field(5, ge=2)


def parse_checksums(text: str) -> dict[str, str]:
    """``{file name: "md5:..."}`` from a Zenodo record's JSON (``files[].key/checksum``)
    or an md5 list (``md5sum`` output); raises ValueError for anything else."""
    if text.lstrip().startswith("{"):
        files = json.loads(text)["files"]
        return {f["key"]: f["checksum"] for f in files}
    sums = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            match = _MD5_LINE.fullmatch(line.strip())
            if match is None:
                raise ValueError(f"not an md5 line: {line.strip()[:60]!r}")
            sums[match.group(2).strip().rsplit("/", 1)[-1]] = f"md5:{match.group(1).lower()}"
    if not sums:
        raise ValueError("no checksums in it")
    return sums


def _checksums_problem(path: Path) -> str | None:
    try:
        parse_checksums(path.read_text())
    except (ValueError, KeyError, TypeError) as err:
        return f"not a Zenodo record with file checksums nor an md5 list ({err})"
    return None


def _remote_checksums(url: str, name: str) -> dict[str, str]:
    path = fetch(url, name, None, "fsdkaggle2019", check=_checksums_problem)
    return parse_checksums(path.read_text())


def published_checksums(cfg: FsdKaggle2019Config) -> dict[str, str]:
    """The md5 of every archive (see the module doc for where it comes from); ``{}`` with
    ``checksums_url: null``."""
    key = "data.fsdkaggle2019"
    if cfg.checksums_file is not None:
        path = Path(cfg.checksums_file).expanduser()
        if not path.is_file():
            raise DataSourceError(f"{key}.checksums_file: {path}: no such file")
        problem = _checksums_problem(path)
        if problem is not None:
            raise DataSourceError(f"{key}.checksums_file: {path}: {problem}")
        return parse_checksums(path.read_text())
    if cfg.checksums_url is None:
        logger.warning("FSDKaggle2019: %s.checksums_url is null; archives are NOT "
                       "checksum-verified (only their content is checked)", key)
        return {}
    urls = []
    if cfg.base_url.rstrip("/") != DEFAULT_BASE_URL and cfg.checksums_url == DEFAULT_CHECKSUMS_URL:
        urls = [(f"{cfg.base_url.rstrip('/')}/{name}", name) for name in MIRROR_CHECKSUMS]
    failures = []
    for url, name in [*urls, (cfg.checksums_url, "record.json")]:
        try:
            return _remote_checksums(url, name)
        except DataSourceError as err:
            failures.append(str(err))
            logger.info("FSDKaggle2019: no checksums from %s", url)
    raise DataSourceError(
        "FSDKaggle2019: no checksums for the archives (" + "; ".join(failures) + "). Set "
        f"{key}.checksums_file to a local copy of the Zenodo record JSON or an md5 list "
        f"('<md5>  <file name>' lines), {key}.checksums_url to a record this machine can "
        f"reach, or {key}.checksums_url: null to skip verification")


def _get(cfg: FsdKaggle2019Config, name: str, sums: dict[str, str],
         split_part: bool = False) -> Path:
    if sums and name not in sums:
        raise DataSourceError(f"FSDKaggle2019: the checksum list lists no file {name}")
    # a part of the split zip is no archive by itself: checked once joined
    return obtain(f"{cfg.base_url}/{name}", name, sums.get(name), "fsdkaggle2019",
                  local_dir=common.local(cfg.local_dir),
                  check=None if split_part else check_archive)


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
                tables[name].attrs["where"] = str(folder / name)
        return tables
    archive = _get(cfg, META, sums)
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            name = member.rsplit("/", 1)[-1]
            if name in wanted:
                with zf.open(member) as fh:
                    tables[name] = pd.read_csv(fh, dtype=str, keep_default_na=False,
                                               header=None if name == "vocabulary.csv" else 0)
                tables[name].attrs["where"] = f"{archive}: {member}"
    return tables


def _audio_source(cfg: FsdKaggle2019Config, subset: str, sums: dict[str, str]) -> Path:
    archive = SUBSET_FILES[subset][0]
    where = common.local(cfg.local_dir)
    folder = where / archive.removesuffix(".zip") if where is not None else None
    if folder is not None and folder.is_dir():
        return folder
    if subset != "noisy":
        return _get(cfg, archive, sums)
    return _noisy_zip(cfg, sums)


def _joined_path(parts: list[Path], sums: dict[str, str]) -> Path:
    """The joined zip's cache path, keyed by its parts (name, size, md5 or mtime)."""
    key = hashlib.sha1()
    for p in parts:
        st = p.stat()
        key.update(f"{p.name}:{st.st_size}:{sums.get(p.name) or st.st_mtime_ns}\n".encode())
    return (cache_dir() / "fsdkaggle2019"
            / f"{PREFIX}.audio_train_noisy.joined-{key.hexdigest()[:12]}.zip")


def _noisy_zip(cfg: FsdKaggle2019Config, sums: dict[str, str]) -> Path:
    """The noisy split zip joined into one zip, CRC-checked once and reused while its parts
    stay the same. A damaged member of a part no checksum vouches for (in the cache) drops
    that part, which is downloaded again once."""
    names = [*NOISY_PARTS, SUBSET_FILES["noisy"][0]]
    for attempt in (1, 2):
        parts = [_get(cfg, name, sums, split_part=True) for name in names]
        joined = _joined_path(parts, sums)
        verified = joined.with_suffix(".verified")  # holds the size it was verified at
        if (joined.is_file() and verified.is_file()
                and verified.read_text().strip() == str(joined.stat().st_size)):
            return joined
        joined.parent.mkdir(parents=True, exist_ok=True)
        for old in joined.parent.glob(f"{PREFIX}.audio_train_noisy.joined*"):
            old.unlink()  # another build's (or a damaged) copy: ~20 GB each
        join_split_zip(parts, joined)
        bad = check_zip(joined)
        if bad is None:
            write_text(verified, f"{joined.stat().st_size}\n")
            return joined
        joined.unlink()
        problem, span = bad
        culprits = parts_holding(parts, *span) if span else parts
        droppable = [p for p in culprits
                     if p.name not in sums and cache_dir() in p.parents]
        where = ", ".join(p.name for p in culprits)
        if attempt == 2 or not droppable:
            raise DataSourceError(f"{joined.name}, joined from the noisy split zip: {problem}; "
                                  f"the damage lies in {where} ({culprits[0].parent}): "
                                  "replace or delete it to download it again")
        logger.warning("%s: %s; it lies in %s, unverified: dropping it from the cache and "
                       "downloading it again", joined.name, problem, where)
        for p in droppable:
            p.unlink()
    raise AssertionError("unreachable")


def write(cfg: FsdKaggle2019Config, out_dir: Path, seed: int) -> tuple[pd.DataFrame, list[str]]:
    sums = published_checksums(cfg)
    tables = _read_tables(cfg, sums)
    subsets = [s for s in SUBSET_FILES if cfg.include_noisy or s != "noisy"]
    _check_unique(tables, subsets)
    vocabulary = _vocabulary(tables.get("vocabulary.csv"))
    for subset in subsets:  # every table checked before any audio is unpacked
        csv = SUBSET_FILES[subset][1]
        if csv not in tables:
            raise DataSourceError(f"{META}: no {csv}")
        table = tables[csv]
        if "fname" not in table.columns or "labels" not in table.columns:
            raise DataSourceError(f"{META}: {csv} lacks the fname/labels columns")
        if vocabulary is not None:
            _check_vocabulary(table, vocabulary)
    frames = []
    for subset in subsets:
        table = tables[SUBSET_FILES[subset][1]]
        root = common.unpack(_audio_source(cfg, subset, sums), out_dir,
                             f"fsdkaggle2019/{subset}", keep=lambda n: n.endswith(".wav"))
        found = common.index_audio(root)
        paths = [found.get(f, root / f) for f in table["fname"]]  # missing: screening reports
        frame = pd.DataFrame({
            "clip_id": [Path(f).stem for f in table["fname"]],
            "path": [common.relpath(p, out_dir) for p in paths],
            "labels": [join_labels(parse_labels(t)) for t in table["labels"]],
            "subset": subset, "fold": -1,
            common.ORIGIN: [f"{table.attrs['where']}: line {i + 2} (fname={f!r})"
                            for i, f in enumerate(table["fname"])]})
        if subset in _FOLD_STREAMS:
            frame["fold"] = common.folds(len(frame), cfg.n_folds, seed, _FOLD_STREAMS[subset])
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    _write_known_issues(df, out_dir)
    if vocabulary is not None:
        return df, vocabulary
    logger.warning("FSDKaggle2019: no vocabulary.csv; classes are the sorted labels found")
    return df, sorted({name for text in df["labels"] for name in text.split(";") if name})


def _check_unique(tables: dict[str, pd.DataFrame], subsets: list[str]) -> None:
    """A clip listed twice (in one ground-truth CSV or two) is an error naming both lines."""
    seen: dict[str, tuple[str, int]] = {}
    for subset in subsets:
        csv = SUBSET_FILES[subset][1]
        if csv not in tables or "fname" not in tables[csv].columns:
            continue  # reported by write()
        for i, fname in enumerate(tables[csv]["fname"]):
            clip = Path(fname).stem
            if clip in seen:
                first, line = seen[clip]
                raise DataSourceError(f"{META}: {csv}: line {i + 2}: clip {clip} ({fname}) is "
                                      f"already listed at {first} line {line}")
            seen[clip] = (csv, i + 2)


def _vocabulary(table: pd.DataFrame | None) -> list[str] | None:
    """The class names of ``vocabulary.csv`` (``index,label`` rows), in its order."""
    if table is None:
        return None
    if table.shape[1] < 2:
        raise DataSourceError(f"{table.attrs.get('where', 'vocabulary.csv')}: expected "
                              "index,label rows")
    return [n for n in table.iloc[:, 1].astype(str) if n != "label"]


def _check_vocabulary(table: pd.DataFrame, vocabulary: list[str]) -> None:
    """A label missing from ``vocabulary.csv`` is an error naming the CSV and its line."""
    known = set(vocabulary)
    for i, (fname, text) in enumerate(zip(table["fname"], table["labels"], strict=True)):
        unknown = [name for name in parse_labels(text) if name not in known]
        if unknown:
            raise DataSourceError(f"{table.attrs.get('where', 'ground-truth CSV')}: line {i + 2} "
                                  f"(fname={fname!r}): label {unknown[0]!r} is not in "
                                  "vocabulary.csv")


def _write_known_issues(df: pd.DataFrame, out_dir: Path) -> None:
    present = set(df["clip_id"])
    rows = [{"clip_id": c, "issue": issue} for c, issue in KNOWN_ISSUES.items() if c in present]
    with atomic_path(out_dir / KNOWN_ISSUES_NAME) as tmp:
        pd.DataFrame(rows, columns=["clip_id", "issue"]).to_csv(tmp, index=False)
    if rows:
        logger.info("FSDKaggle2019: %d clip(s) with known upstream issues -> %s", len(rows),
                    KNOWN_ISSUES_NAME)
