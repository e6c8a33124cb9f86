"""Screening of a source's clips: unreadable, empty and all-silent files are excluded.

A bad file is never replaced by silence (one notebook this project replaces returned
zeros for any unreadable file and trained on them). Each bad clip is listed in
``bad_clips.csv`` beside the manifest and logged; the stage fails when more than
``data.max_bad_fraction`` of the clips are bad, since that points at a broken download
or a wrong decoder rather than a few damaged files.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from audiotag.core.errors import DataSourceError
from audiotag.core.io import atomic_path
from audiotag.data.manifest import audio_paths

logger = logging.getLogger(__name__)

BAD_CLIPS_NAME = "bad_clips.csv"
SILENCE_PEAK = 1e-6
"""A clip whose absolute peak stays below this (-120 dBFS) counts as all-silent."""
_BLOCK = 1 << 18


def probe(path: Path) -> tuple[float, int, str]:
    """``(duration_s, sample_rate, problem)``; ``problem`` is ``""`` for a good clip.

    Reads the whole file in blocks (a header alone says nothing about a truncated or
    silent file) without holding it in memory.
    """
    try:
        with sf.SoundFile(str(path)) as f:
            sr, peak, n = f.samplerate, 0.0, 0
            for block in f.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True):
                n += len(block)
                if len(block):
                    peak = max(peak, float(np.abs(block).max()))
    except Exception as err:  # soundfile raises several types; the reason is what matters
        return float("nan"), 0, f"unreadable: {err}"
    if n == 0:
        return 0.0, sr, "empty: no samples"
    if not np.isfinite(peak):
        return n / sr, sr, "corrupt: non-finite samples"
    if peak < SILENCE_PEAK:
        return n / sr, sr, "all-silent"
    return n / sr, sr, ""


def screen_clips(manifest: pd.DataFrame, out_dir: Path, max_bad_fraction: float,
                 progress: bool = True,
                 rename: Callable[[str], str] | None = None) -> pd.DataFrame:
    """Fill ``duration_s``/``sample_rate`` from the files and drop bad clips.

    Writes ``out_dir/bad_clips.csv`` (``clip_id,path,problem``; header only when all are
    good); ``rename`` rewrites the paths in problem texts (``out_dir`` may be temporary).
    Raises :class:`DataSourceError` when the bad fraction exceeds the limit.
    """
    paths = audio_paths(manifest, out_dir)
    results = [probe(p) for p in tqdm(paths, desc="checking audio", unit="clip",
                                      disable=None if progress else True)]
    out = manifest.copy()
    out["duration_s"] = [r[0] for r in results]
    out["sample_rate"] = [r[1] for r in results]
    problems = pd.Series([r[2] for r in results], index=manifest.index)
    if rename is not None:  # a temporary build directory -> the final one, in the report
        problems = problems.map(rename)
    bad = problems.ne("")
    report = pd.DataFrame({"clip_id": manifest["clip_id"][bad], "path": manifest["path"][bad],
                           "problem": problems[bad]})
    with atomic_path(out_dir / BAD_CLIPS_NAME) as tmp:
        report.to_csv(tmp, index=False)
    for row in report.itertuples():
        logger.warning("excluding clip %s (%s): %s", row.clip_id, row.path, row.problem)
    fraction = float(bad.mean()) if len(bad) else 0.0
    if fraction > max_bad_fraction:
        raise DataSourceError(
            f"{int(bad.sum())} of {len(bad)} clips are unreadable, empty or silent "
            f"({fraction:.1%} > data.max_bad_fraction={max_bad_fraction:g}); "
            f"first: {report['path'].iloc[0]} ({report['problem'].iloc[0]})")
    if bad.any():
        logger.warning("%d bad clip(s) excluded; listed in %s", int(bad.sum()), BAD_CLIPS_NAME)
    return out[~bad].reset_index(drop=True)
