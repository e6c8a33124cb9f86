"""GTZAN: 10 music genres x 100 thirty-second excerpts (Tzanetakis & Cook 2002).

Upstream archive ``genres.tar.gz`` holds ``genres/<genre>/<genre>.000NN.au`` (22,050 Hz
AU). Only the clips of the fault-filtered split (:mod:`audiotag.data.gtzan_split`) are
used: train -> ``curated`` fold 1, validation -> ``curated`` fold 0 (so the default
``split.valid_fold: 0`` validates on the official validation set), test -> ``test``.
The known undecodable file (jazz.00054) is listed in ``bad_clips.csv``, not fatal.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from audiotag.core.params import InputPath, Strict
from audiotag.data import common, gtzan_split
from audiotag.data.fetch import obtain

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://opihi.cs.uvic.ca/sound/genres.tar.gz"
ARCHIVE_NAME = "genres.tar.gz"
# sha256 of genres.tar.gz as recorded in torchaudio/datasets/gtzan.py (_CHECKSUMS). The
# original host is often offline; not re-verified here against a fresh download.
SHA256 = "sha256:24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6"
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
          "reggae", "rock")
_PARTS = (("curated", 1, gtzan_split.TRAIN), ("curated", 0, gtzan_split.VALID),
          ("test", -1, gtzan_split.TEST))


class GtzanConfig(Strict):
    url: str = DEFAULT_URL
    local_dir: InputPath = None


def write(cfg: GtzanConfig, out_dir: Path, seed: int) -> tuple[pd.DataFrame, list[str]]:
    del seed  # the filtered split is fixed
    where = common.local(cfg.local_dir)
    source = None
    if where is not None:
        source = next((d for d in (where, where / "genres") if (d / "jazz").is_dir()), None)
    if source is None:
        source = obtain(cfg.url, ARCHIVE_NAME, SHA256, "gtzan", local_dir=where)
    root = common.unpack(source, out_dir, "gtzan",
                         keep=lambda n: n.endswith((".au", ".wav")))
    found = {Path(name).stem: p for name, p in common.index_audio(root).items()}
    rows = []
    for subset, fold, split in _PARTS:
        for genre, numbers in split.items():
            for n in numbers:
                clip_id = f"{genre}.{n:05d}"
                # a file missing from the archive stays in the manifest: screening reports
                # it as unreadable and counts it against data.max_bad_fraction
                path = found.get(clip_id, root / "genres" / genre / f"{clip_id}.au")
                rows.append({"clip_id": clip_id, "path": common.relpath(path, out_dir),
                             "labels": genre, "subset": subset, "fold": fold})
    return pd.DataFrame(rows), list(GENRES)
