"""ESC-50: 2,000 five-second environmental sound clips, 50 classes, 5 folds (Piczak 2015).

Upstream: github.com/karolpiczak/ESC-50; the archive GitHub generates for the master
branch has ``ESC-50-master/audio/*.wav`` and ``ESC-50-master/meta/esc50.csv``
(``filename,fold,target,category,esc10,src_file,take``). GitHub generates it on the fly,
so there is no stable checksum to publish; the content is checked instead.

Folds are upstream's (clips cut from one source recording share a fold), so a whole fold
is either test or train and nothing leaks: ``test_fold`` is the test set, the other four
become folds 0..3 in upstream order (``split.valid_fold: 0`` validates on the first).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from pydantic import Field

from audiotag.core.errors import DataSourceError
from audiotag.core.params import InputPath, Strict
from audiotag.data import common
from audiotag.data.archives import check_archive
from audiotag.data.fetch import obtain

logger = logging.getLogger(__name__)

DEFAULT_URL = "https://github.com/karolpiczak/ESC-50/archive/refs/heads/master.zip"
META = "meta/esc50.csv"
EXPECTED_CLIPS, EXPECTED_CLASSES = 2000, 50


class Esc50Config(Strict):
    url: str = DEFAULT_URL
    test_fold: int = Field(1, ge=1, le=5)
    local_dir: InputPath = None


def _root(cfg: Esc50Config, out_dir: Path) -> Path:
    where = common.local(cfg.local_dir)
    source: Path | None = None
    if where is not None:
        source = next((d for d in [where, *sorted(where.glob("ESC-50*/"))]
                       if (d / META).is_file()), None)
    if source is None:
        fname = "ESC-50-" + cfg.url.rstrip("/").rsplit("/", 1)[-1]
        if where is not None and (where / "ESC-50-master.zip").is_file():
            fname = "ESC-50-master.zip"
        source = obtain(cfg.url, fname, None, "esc50", local_dir=where, check=check_archive)
    root = common.unpack(source, out_dir, "esc50",
                         keep=lambda n: n.endswith((".wav", "esc50.csv")))
    found = sorted(root.rglob("esc50.csv"))
    if not found:
        raise DataSourceError(f"{cfg.url}: no {META} in the archive")
    return found[0].parent.parent


def write(cfg: Esc50Config, out_dir: Path, seed: int) -> tuple[pd.DataFrame, list[str]]:
    del seed  # upstream's folds are the split
    root = _root(cfg, out_dir)
    meta_path = root / META
    meta = common.read_csv(meta_path, "ESC-50 metadata",
                           ("filename", "fold", "target", "category", "src_file"))
    folds = sorted(meta["fold"].unique())
    if cfg.test_fold not in folds:
        raise DataSourceError(f"data.esc50.test_fold={cfg.test_fold}: {meta_path} has folds "
                              f"{folds}")
    train_folds = {f: i for i, f in enumerate(x for x in folds if x != cfg.test_fold)}
    rows = []
    for i, r in enumerate(meta.itertuples(index=False)):
        path = root / "audio" / r.filename
        if not path.is_file():
            raise DataSourceError(f"{meta_path}: line {i + 2}: {r.filename} is not in audio/")
        test = r.fold == cfg.test_fold
        rows.append({"clip_id": Path(r.filename).stem, "path": common.relpath(path, out_dir),
                     "labels": r.category, "subset": "test" if test else "curated",
                     "fold": -1 if test else train_folds[r.fold], "source_fold": r.fold,
                     "source_id": r.src_file})
    classes = (meta.drop_duplicates("target").sort_values("target")["category"]
               .astype(str).tolist())
    if len(meta) != EXPECTED_CLIPS or len(classes) != EXPECTED_CLASSES:
        logger.warning("ESC-50: %d clips / %d classes (upstream: %d / %d)", len(meta),
                       len(classes), EXPECTED_CLIPS, EXPECTED_CLASSES)
    return pd.DataFrame(rows), classes
