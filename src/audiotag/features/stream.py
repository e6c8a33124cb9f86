"""A long recording's features, piece by piece, equal to the whole file's.

:func:`audio_blocks` gives a file's waveform in pieces; here the front end runs on
overlapping segments of it, each holding the samples its frames' windows reach (the STFT
centres frame ``t`` on sample ``t * hop_length``; reflect padding only at the file's two
ends, as for the whole file), and ``top_db`` floors from the whole file's maxima, found in
a first pass (:meth:`FrontEnd.peaks`). A file of one piece takes the whole-file path
(the ``features`` stage's default clips all do). Memory: a few pieces, whatever the
length; with ``top_db`` a long file's waveform at ``features.sample_rate`` is kept in a
temporary file between the two passes (4 bytes a sample: 230 MB per hour at 16 kHz), so
it is decoded and resampled once.
"""

from __future__ import annotations

import itertools
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
import torch

from audiotag.features.audio import audio_blocks
from audiotag.features.frontend import FrontEnd

Segment = tuple[torch.Tensor, int, int]
"""``(samples, first, last)``: a stretch of waveform and the frames ``[first, last)`` of
its own STFT that are the whole file's (the others see a segment edge)."""


def segments(pieces: Iterator[torch.Tensor], n_fft: int, hop: int) -> Iterator[Segment]:
    """Cut consecutive waveform ``pieces`` into overlapping :data:`Segment` s whose valid
    frames follow each other without gap or overlap."""
    left, right = n_fft // 2, n_fft - n_fft // 2  # a frame's reach around its centre
    context = math.ceil(left / hop) * hop  # samples kept before the next frame's centre
    buf, start = torch.zeros(0), 0  # buf[0] is sample `start` (a multiple of hop)
    done, hold = 0, 0  # whole-file frames given out; the longest piece so far
    pending = next(pieces, None)
    while pending is not None:
        buf = torch.cat([buf, pending]) if len(buf) else pending
        hold = max(hold, len(pending))
        pending = next(pieces, None)
        end = start + len(buf)
        if pending is None:  # every frame left: reflect padding at the file's end
            last = 1 + end // hop
        else:  # frames whose window lies in buf, a piece's worth held back for the last
            last = (end - right - hold) // hop + 1
            # never a short segment: torch takes other paths (other last bits) on small inputs
            if last - done < max(1, hold // hop // 2):
                continue
        if last > done:
            yield buf, done - start // hop, last - start // hop
            done = last
        keep = max(0, done * hop - context)
        buf, start = buf[keep - start:], keep


def clip_frames(path: str | os.PathLike[str], frontend: FrontEnd,
                whole: Callable[[torch.Tensor], torch.Tensor] = lambda w: w,
                block_seconds: float | None = None) -> Iterator[torch.Tensor]:
    """Features ``(dim, frames)`` of a file in consecutive pieces (see the module doc); a
    file of one piece is passed through ``whole`` (padding a short clip) first."""
    cfg = frontend.cfg

    def pieces() -> Iterator[torch.Tensor]:
        return audio_blocks(path, cfg.sample_rate, block_seconds)

    with torch.no_grad():
        it = pieces()
        first = next(it)
        second = next(it, None)
        if second is None:  # the whole-file path
            yield frontend(whole(first)[None])[0]
            return
        it = itertools.chain([first, second], it)
        if cfg.kind == "waveform":
            yield from (p[None] for p in it)
            return
        if not (cfg.to_db and cfg.top_db is not None):
            for wave, a, b in segments(it, cfg.n_fft, cfg.hop_length):
                yield frontend(wave[None])[0, :, a:b]
            return
        with tempfile.TemporaryFile() as spill:  # the waveform at the target rate, once
            sizes: list[int] = []
            peaks = _peaks(segments(_spilled(it, spill, sizes), cfg.n_fft, cfg.hop_length),
                           frontend)
            spill.seek(0)
            replay = (torch.from_numpy(np.fromfile(spill, np.float32, n)) for n in sizes)
            for wave, a, b in segments(replay, cfg.n_fft, cfg.hop_length):
                yield frontend(wave[None], peaks)[0, :, a:b]


def _spilled(pieces: Iterator[torch.Tensor], spill: BinaryIO,
             sizes: list[int]) -> Iterator[torch.Tensor]:
    """``pieces``, each also written to ``spill`` (its length appended to ``sizes``)."""
    for piece in pieces:
        piece.numpy().tofile(spill)
        sizes.append(len(piece))
        yield piece


def _peaks(parts: Iterator[Segment], frontend: FrontEnd) -> dict[str, torch.Tensor]:
    """The whole file's :meth:`FrontEnd.peaks` (empty without ``top_db``)."""
    cfg, peaks = frontend.cfg, {}
    if not (cfg.to_db and cfg.top_db is not None):
        return peaks
    for wave, a, b in parts:
        found = frontend.peaks(frontend.power(wave[None])[..., a:b])
        peaks = {k: torch.maximum(v, peaks[k]) if k in peaks else v for k, v in found.items()}
    return peaks
