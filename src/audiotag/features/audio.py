"""Audio loading and fitting clips to a fixed length."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from audiotag.core.errors import AudioError
from audiotag.data.screen import downmix


def load_audio(path: str | os.PathLike[str], sample_rate: int) -> torch.Tensor:
    """Mono float32 waveform ``(samples,)`` at ``sample_rate`` (resampled if needed)."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    except Exception as err:  # soundfile raises several types; name the file either way
        raise AudioError(f"{path}: cannot read audio: {err}") from err
    if data.shape[0] == 0:
        raise AudioError(f"{path}: audio file has no samples")
    wave = torch.from_numpy(np.ascontiguousarray(downmix(data)))  # as screening sees it
    if sr != sample_rate:
        wave = AF.resample(wave, sr, sample_rate)
    return wave


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
