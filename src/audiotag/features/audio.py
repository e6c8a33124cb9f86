"""Audio loading and fitting clips to a fixed length.

A recording is decoded, downmixed and resampled in blocks (:func:`audio_blocks`), so the
memory it takes does not grow with its length. The pieces join up to exactly what a
whole-file read gives: a file of at most one block (``BLOCK_SECONDS`` at its own rate)
comes as one piece, read and resampled whole as before; a longer one is resampled piece
by piece, each piece with the sinc kernel's context on both sides and at least one block
long (torch picks the convolution algorithm by input size, and the small last piece of a
naive split can differ in the last bit). ``tests/unit/test_audio.py`` checks equality
for several rates.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from audiotag.core.errors import AudioError
from audiotag.data.screen import downmix

BLOCK_SECONDS = 60.0
"""Seconds of a file decoded at a time: bounds the memory one recording takes (about 30 MB
for 44.1 kHz stereo), not a result (the blocks join up bit for bit)."""


def _decoded(path: str | os.PathLike[str], block_seconds: float
             ) -> tuple[int, int, Iterator[np.ndarray]]:
    """``(sample rate, frames per block, mono float32 blocks)`` of one file, decoded in
    order (no seeking: a compressed format decodes the same as in one read)."""
    try:
        f = sf.SoundFile(str(path))
    except Exception as err:  # soundfile raises several types; name the file either way
        raise AudioError(f"{path}: cannot read audio: {err}") from err
    block = max(1, round(block_seconds * f.samplerate))  # see one_piece

    def blocks() -> Iterator[np.ndarray]:
        with f:
            while True:
                try:
                    data = f.read(block, dtype="float32", always_2d=True)  # (frames, channels)
                except Exception as err:
                    raise AudioError(f"{path}: cannot read audio: {err}") from err
                if len(data):
                    yield np.ascontiguousarray(downmix(data))  # as screening sees it
                if len(data) < block:
                    return
    return f.samplerate, block, blocks()


class _Resampler:
    """Consecutive pieces of one signal at ``orig`` Hz -> the matching pieces of
    ``AF.resample(whole, orig, new)``, bit for bit (see the module doc)."""

    def __init__(self, orig: int, new: int, min_piece: int) -> None:
        self.orig_hz, self.new_hz = orig, new
        g = math.gcd(orig, new)
        self.o, self.n = orig // g, new // g
        # torchaudio's kernel: output block b (n samples) reads input [b*o - width, b*o + width + o)
        self.width = math.ceil(6 * self.o / (min(self.o, self.n) * 0.99))
        self.lead = math.ceil(self.width / self.o)  # blocks of context a piece needs before it
        self.min_piece = min_piece
        self.buf = np.zeros(0, dtype=np.float32)
        self.buf_start = 0  # input index of buf[0] (a multiple of o)
        self.done = 0  # output blocks (of n samples) given out
        self.seen = 0  # input samples pushed

    def _run(self, stop_block: int | None) -> torch.Tensor:
        """Output blocks ``[done, stop_block)`` (None: to the end of the signal)."""
        first = self.buf_start // self.o  # whole-signal block number of the piece's block 0
        y = AF.resample(torch.from_numpy(self.buf), self.orig_hz, self.new_hz)
        skip = (self.done - first) * self.n
        if stop_block is None:
            total = math.ceil(self.n * self.seen / self.o)
            out = y[skip:skip + total - self.done * self.n]
        else:
            out = y[skip:(stop_block - first) * self.n]
            self.done = stop_block
            keep = max(0, (stop_block - self.lead) * self.o)  # context of the next block
            self.buf = self.buf[keep - self.buf_start:]
            self.buf_start = keep
        return out

    def push(self, x: np.ndarray) -> torch.Tensor | None:
        """Feed the next input samples; the output they complete (None: none yet). A
        piece is cut only with ``min_piece`` input samples left over for the last one."""
        self.buf = np.concatenate([self.buf, x]) if len(self.buf) else x
        self.seen += len(x)
        end = self.buf_start + len(self.buf) - self.min_piece
        stop = (end - self.width - self.o) // self.o + 1  # blocks whose inputs are all here
        return self._run(stop) if stop > self.done else None

    def finish(self) -> torch.Tensor:
        return self._run(None)


def audio_blocks(path: str | os.PathLike[str], sample_rate: int,
                 block_seconds: float | None = None) -> Iterator[torch.Tensor]:
    """Mono float32 pieces ``(samples,)`` of a file at ``sample_rate``, in order; joined,
    they equal the whole-file waveform (:func:`load_audio`) bit for bit. A file of at
    most ``block_seconds`` comes as one piece. :class:`AudioError` naming the file if it
    cannot be read or holds no samples."""
    sr, block, blocks = _decoded(path, block_seconds or BLOCK_SECONDS)
    if sr == sample_rate:
        pieces: Iterator[torch.Tensor] = (torch.from_numpy(x) for x in blocks)
    else:
        pieces = _resampled(blocks, sr, sample_rate, block)
    empty = True
    for piece in pieces:
        empty = False
        yield piece
    if empty:
        raise AudioError(f"{path}: audio file has no samples")


def _resampled(blocks: Iterator[np.ndarray], orig: int, new: int,
               block: int) -> Iterator[torch.Tensor]:
    resampler = _Resampler(orig, new, block)
    for x in blocks:
        out = resampler.push(x)
        if out is not None and len(out):
            yield out
    if resampler.seen:
        yield resampler.finish()


def resampled_length(frames: int, orig: int, new: int) -> int:
    """Samples at ``new`` Hz of ``frames`` samples at ``orig`` Hz (as ``AF.resample``)."""
    g = math.gcd(orig, new)
    return frames if orig == new else math.ceil(new // g * frames / (orig // g))


def one_piece(frames: int, sample_rate: int) -> bool:
    """Whether a file of ``frames`` at ``sample_rate`` comes as one piece from
    :func:`audio_blocks` (and is processed whole)."""
    return frames <= max(1, round(BLOCK_SECONDS * sample_rate))


def load_audio(path: str | os.PathLike[str], sample_rate: int) -> torch.Tensor:
    """Mono float32 waveform ``(samples,)`` at ``sample_rate`` (resampled if needed): the
    whole file in memory (:func:`audio_blocks` for a long one)."""
    pieces = list(audio_blocks(path, sample_rate))
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces)


def fit_length(wave: torch.Tensor, n_samples: int, pad_mode: str) -> torch.Tensor:
    """Center-crop a long clip or pad a short one to exactly ``n_samples``.

    Pad modes for a clip shorter than ``n_samples``:
        wrap     repeat the clip from its start (abc -> abcabca)
        zeros    silence after the clip
        reflect  numpy-style reflection without repeating the edge (abc -> abcba...)
        mirror   the clip followed by its time reverse, repeated (abc -> abccbaabc...)
    """
    length = wave.shape[-1]
    if length >= n_samples:
        start = (length - n_samples) // 2
        return wave[..., start:start + n_samples]
    missing = n_samples - length
    if pad_mode == "zeros":
        return torch.nn.functional.pad(wave, (0, missing))
    if pad_mode == "wrap":
        period = wave
    elif pad_mode == "mirror":
        period = torch.cat([wave, wave.flip(-1)], dim=-1)
    elif pad_mode == "reflect":
        # one period of reflection: a b c b (no repeated edge samples)
        period = torch.cat([wave, wave.flip(-1)[..., 1:-1]], dim=-1) if length > 2 else wave
    else:
        raise ValueError(f"unknown pad_mode {pad_mode!r}")
    reps = -(-n_samples // period.shape[-1])  # ceil division
    return period.repeat(*([1] * (wave.dim() - 1)), reps)[..., :n_samples]


def pad_to_length(wave: torch.Tensor, n_samples: int, pad_mode: str) -> torch.Tensor:
    """Pad a clip shorter than ``n_samples`` with ``pad_mode``; keep a longer one whole
    (it is cropped later, at load time: randomly in training, centre or N windows at
    evaluation)."""
    if wave.shape[-1] >= n_samples:
        return wave
    return fit_length(wave, n_samples, pad_mode)
