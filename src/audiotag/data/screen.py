"""Screening of a source's clips: what features would read is what gets checked.

Unreadable, empty, too short (``data.min_seconds``), non-finite (NaN or infinite samples
anywhere) and all-silent files are excluded. Silence is judged on the mono downmix that
feature extraction uses (:func:`downmix`, the same code), so a stereo clip whose channels
cancel is silent here too. A WAV whose header claims more frames than the file holds
(a truncated copy) is kept, since what is there decodes, but warned about.

A bad file is never replaced by silence (one notebook this project replaces returned
zeros for any unreadable file and trained on them). Each problem clip is listed in
``bad_clips.csv`` beside the manifest (``action``: ``excluded`` or ``kept``) and logged;
the stage fails when more than ``data.max_bad_fraction`` of the clips are excluded, since
that points at a broken download or a wrong decoder rather than a few damaged files.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import soundfile as sf
from tqdm.auto import tqdm

from audiotag.core.errors import DataSourceError
from audiotag.core.io import atomic_path
from audiotag.data.common import PROBLEM
from audiotag.data.manifest import audio_paths

logger = logging.getLogger(__name__)

BAD_CLIPS_NAME = "bad_clips.csv"
SILENCE_PEAK = 1e-6
"""A clip whose absolute peak stays below this (-120 dBFS) counts as all-silent."""
_BLOCK = 1 << 18


def downmix(data: np.ndarray) -> np.ndarray:
    """Mono ``(samples,)`` from ``(samples, channels)``: the channel mean. Feature
    extraction (:func:`audiotag.features.audio.load_audio`) and screening both use this."""
    return data.mean(axis=1)


class Probe(NamedTuple):
    duration_s: float
    sample_rate: int
    problem: str
    """Why the clip is excluded; ``""`` for a clip that is kept."""
    warning: str = ""
    """A problem of a kept clip (``truncated: ...``); ``""`` when there is none."""


def wav_declared_frames(path: Path) -> int | None:
    """Frames a RIFF/WAVE header's ``data`` chunk claims, or None (not a WAV, or a size
    the writer left open: 0 or 0xFFFFFFFF, as streaming writers do)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
                return None
            order = "<" if head[:4] == b"RIFF" else ">"
            block_align = 0
            while True:
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(size)
                    if len(fmt) < 14:
                        return None
                    block_align = struct.unpack(order + "H", fmt[12:14])[0]
                    fh.seek(size % 2, 1)
                elif cid == b"data":
                    if block_align == 0 or size in (0, 0xFFFFFFFF):
                        return None
                    return size // block_align
                else:
                    fh.seek(size + size % 2, 1)
    except OSError:
        return None


def probe(path: Path, min_seconds: float = 0.0) -> Probe:
    """Measure and check one clip; ``problem`` is ``""`` for a clip that is kept.

    Reads the whole file in blocks (a header alone says nothing about a truncated, silent
    or NaN-holding file) without holding it in memory; every block is checked.
    """
    try:
        with sf.SoundFile(str(path)) as f:
            sr, peak, n, bad_at = f.samplerate, 0.0, 0, -1
            for block in f.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True):
                finite = np.isfinite(block).all(axis=1)
                if bad_at < 0 and not finite.all():
                    bad_at = n + int(np.argmin(finite))
                if len(block) and bad_at < 0:
                    peak = max(peak, float(np.abs(downmix(block)).max()))
                n += len(block)
    except Exception as err:  # soundfile raises several types; the reason is what matters
        return Probe(float("nan"), 0, f"unreadable: {err}")
    declared = wav_declared_frames(path)
    warning = (f"truncated: header says {declared} frames, file holds {n}"
               if declared is not None and n < declared else "")
    if n == 0:
        return Probe(0.0, sr, "empty: no samples", warning)
    duration = n / sr
    if bad_at >= 0:
        return Probe(duration, sr, f"non-finite: NaN or infinite sample at frame {bad_at} "
                                   f"({bad_at / sr:.3f} s)", warning)
    if duration < min_seconds:
        return Probe(duration, sr, f"too short: {duration:g} s < data.min_seconds="
                                   f"{min_seconds:g}", warning)
    if peak < SILENCE_PEAK:
        return Probe(duration, sr, "all-silent", warning)
    return Probe(duration, sr, "", warning)


def probe_array(path: Path, min_seconds: float = 0.0) -> Probe:
    """:func:`probe` of a precomputed ``(bands, frames)`` ``.npy`` array
    (:mod:`audiotag.data.precomputed`): ``duration_s`` is its frames, ``sample_rate`` 1;
    a constant array is not judged silent (features of silence need not be zero)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:  # numpy raises several types; the reason is what matters
        return Probe(float("nan"), 0, f"unreadable: {err}")
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        return Probe(float("nan"), 0, f"unreadable: expected a numeric (bands, frames) array, "
                                      f"got {array.dtype} {array.shape}")
    frames = array.shape[1]
    if frames == 0 or array.shape[0] == 0:
        return Probe(0.0, 1, "empty: no frames")
    finite = np.isfinite(array).all(axis=0)
    if not finite.all():
        return Probe(float(frames), 1, f"non-finite: NaN or infinite value at frame "
                                       f"{int(np.argmin(finite))}")
    if frames < min_seconds:
        return Probe(float(frames), 1, f"too short: {frames} frames < data.min_seconds="
                                       f"{min_seconds:g}")
    return Probe(float(frames), 1, "")


def screen_clips(manifest: pd.DataFrame, out_dir: Path, max_bad_fraction: float,
                 progress: bool = True, min_seconds: float = 0.0,
                 rename: Callable[[str], str] | None = None) -> pd.DataFrame:
    """Fill ``duration_s``/``sample_rate`` from the files and drop bad clips.

    Writes ``out_dir/bad_clips.csv`` (``clip_id,path,problem,action``; header only when
    all are good); ``rename`` rewrites the paths in problem texts (``out_dir`` may be
    temporary). Raises :class:`DataSourceError` when the excluded fraction exceeds the
    limit.
    """
    paths = audio_paths(manifest, out_dir)
    known = (manifest[PROBLEM].fillna("").astype(str) if PROBLEM in manifest.columns
             else pd.Series("", index=manifest.index))  # found by the source (unreadable)
    results = [Probe(float("nan"), 0, given) if given
               else (probe_array if p.suffix == ".npy" else probe)(p, min_seconds)
               for p, given in zip(tqdm(paths, desc="checking audio", unit="clip",
                                        disable=None if progress else True), known,
                                   strict=True)]
    out = manifest.copy()
    out["duration_s"] = [r.duration_s for r in results]
    out["sample_rate"] = [r.sample_rate for r in results]
    problems = pd.Series([r.problem for r in results], index=manifest.index)
    warnings = pd.Series([r.warning for r in results], index=manifest.index)
    if rename is not None:  # a temporary build directory -> the final one, in the report
        problems, warnings = problems.map(rename), warnings.map(rename)
    bad = problems.ne("")
    listed = bad | warnings.ne("")
    report = pd.DataFrame({
        "clip_id": manifest["clip_id"][listed], "path": manifest["path"][listed],
        "problem": [p if p else w for p, w in zip(problems[listed], warnings[listed],
                                                   strict=True)],
        "action": np.where(bad[listed], "excluded", "kept")})
    with atomic_path(out_dir / BAD_CLIPS_NAME) as tmp:
        report.to_csv(tmp, index=False)
    for row, warning in zip(report.itertuples(), warnings[listed], strict=True):
        if row.action == "excluded":
            also = f" (also {warning})" if warning else ""
            logger.warning("excluding clip %s (%s): %s%s", row.clip_id, row.path, row.problem,
                           also)
        else:
            logger.warning("keeping clip %s (%s), but %s", row.clip_id, row.path, row.problem)
    fraction = float(bad.mean()) if len(bad) else 0.0
    if fraction > max_bad_fraction:
        first = report[report["action"] == "excluded"].iloc[0]
        raise DataSourceError(
            f"{int(bad.sum())} of {len(bad)} clips are unreadable, empty, too short, "
            f"non-finite or silent ({fraction:.1%} > data.max_bad_fraction="
            f"{max_bad_fraction:g}); first: {first['path']} ({first['problem']})")
    if listed.any():
        logger.warning("%d bad clip(s) excluded, %d kept with a warning; listed in %s",
                       int(bad.sum()), int((listed & ~bad).sum()), BAD_CLIPS_NAME)
    return out[~bad].drop(columns=[PROBLEM], errors="ignore").reset_index(drop=True)
