"""FMA (Free Music Archive, Defferrard et al. 2017): genre classification + regression targets.

Upstream: github.com/mdeff/fma; archives at https://os.unil.cloud.switch.ch/fma/.
``fma_metadata.zip`` holds ``fma_metadata/tracks.csv`` (two header rows: top genre in
``track.genre_top``, the official split in ``set.split``, the smallest subset a track
belongs to in ``set.subset``) and ``fma_metadata/echonest.csv`` (three header rows; the
Echo Nest audio features of about 13k tracks). ``fma_<size>.zip`` holds
``fma_<size>/<first 3 digits>/<6-digit track id>.mp3``.

Labels are the top genre (one per clip); valence, energy and danceability become
``targets_valence``/``targets_energy``/``targets_danceability`` (empty where Echo Nest has
no value). The official split: training -> ``curated`` fold 1, validation -> ``curated``
fold 0, test -> ``test``. Tracks of the subset without an audio file are skipped with a
warning; the few truncated MP3s of fma_small are caught by screening (bad_clips.csv).
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path
from typing import Literal

import pandas as pd

from audiotag.core.errors import DataSourceError
from audiotag.core.params import InputPath, Strict
from audiotag.data import common
from audiotag.data.fetch import obtain

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://os.unil.cloud.switch.ch/fma"
# sha1 sums published in the upstream README (github.com/mdeff/fma, "Data" section)
SHA1 = {
    "fma_metadata.zip": "sha1:f0df49ffe5f2a6008d7dc83c6915b31835dfe733",
    "fma_small.zip": "sha1:ade154f733639d52e35e32f5593efe5be76c6d70",
    "fma_medium.zip": "sha1:c67b69ea232021025fca9231fc1c7c1a063ab50b",
    "fma_large.zip": "sha1:497109f4dd721066b5ce5e5f250ec604dc78939e",
}
SIZES = ("small", "medium", "large")  # nested: every small track is also in medium, ...
TARGETS = ("valence", "energy", "danceability")
_SPLIT = {"training": ("curated", 1), "validation": ("curated", 0), "test": ("test", -1)}


class FmaConfig(Strict):
    base_url: str = DEFAULT_BASE_URL
    size: Literal["small", "medium", "large"] = "small"
    local_dir: InputPath = None


def _member(zf: zipfile.ZipFile, archive: Path, name: str) -> str:
    hits = [n for n in zf.namelist() if n == name or n.endswith("/" + name)]
    if not hits:
        raise DataSourceError(f"{archive}: no {name} inside")
    return hits[0]


def read_metadata(archive: Path, size: str) -> pd.DataFrame:
    """Tracks of ``size`` with columns genre, split and the targets (track id index)."""
    with zipfile.ZipFile(archive) as zf:
        with zf.open(_member(zf, archive, "tracks.csv")) as fh:
            tracks = pd.read_csv(fh, index_col=0, header=[0, 1], low_memory=False)
        with zf.open(_member(zf, archive, "echonest.csv")) as fh:
            echonest = pd.read_csv(fh, index_col=0, header=[0, 1, 2])
    try:
        subset = tracks[("set", "subset")]
        keep = subset.isin(SIZES[:SIZES.index(size) + 1])
        out = pd.DataFrame({"genre": tracks[("track", "genre_top")][keep],
                            "split": tracks[("set", "split")][keep]})
        features = echonest[("echonest", "audio_features")]
        for name in TARGETS:
            out[f"targets_{name}"] = features[name].reindex(out.index)
    except KeyError as err:
        raise DataSourceError(f"{archive}: tracks.csv/echonest.csv lack column {err}") from None
    return out


def write(cfg: FmaConfig, out_dir: Path, seed: int) -> tuple[pd.DataFrame, list[str]]:
    del seed  # the official split is fixed
    where = common.local(cfg.local_dir)
    meta_zip = obtain(f"{cfg.base_url}/fma_metadata.zip", "fma_metadata.zip",
                      SHA1["fma_metadata.zip"], "fma", local_dir=where)
    meta = read_metadata(meta_zip, cfg.size)
    name = f"fma_{cfg.size}.zip"
    audio_dir = where / f"fma_{cfg.size}" if where is not None else None
    source = (audio_dir if audio_dir is not None and audio_dir.is_dir() else
              obtain(f"{cfg.base_url}/{name}", name, SHA1[name], "fma", local_dir=where))
    root = common.unpack(source, out_dir, "fma", keep=lambda n: n.endswith(".mp3"))
    found = common.index_audio(root)
    rows, no_audio, no_genre = [], [], []
    for track_id, r in meta.iterrows():
        path = found.get(f"{int(track_id):06d}.mp3")
        if path is None:
            no_audio.append(int(track_id))
            continue
        if not isinstance(r["genre"], str) or r["split"] not in _SPLIT:
            no_genre.append(int(track_id))
            continue
        subset, fold = _SPLIT[r["split"]]
        rows.append({"clip_id": f"{int(track_id):06d}", "path": common.relpath(path, out_dir),
                     "labels": r["genre"], "subset": subset, "fold": fold,
                     **{f"targets_{t}": r[f"targets_{t}"] for t in TARGETS}})
    if no_audio:
        logger.warning("FMA: %d track(s) of fma_%s have no audio file, skipped (e.g. %s)",
                       len(no_audio), cfg.size, ", ".join(map(str, no_audio[:5])))
    if no_genre:
        logger.warning("FMA: %d track(s) without a top genre or split, skipped (e.g. %s)",
                       len(no_genre), ", ".join(map(str, no_genre[:5])))
    if not rows:
        raise DataSourceError(f"{meta_zip}: no track of fma_{cfg.size} has audio")
    df = pd.DataFrame(rows)
    return df, sorted(df["labels"].unique().tolist())
