"""Fast features for label cleaning, computed from the audio (the stage runs before ``features``).

Each clip becomes a log-mel image ``(n_mels, frames)`` covering up to ``max_seconds`` of
the *whole* clip (labels describe the whole clip, so nothing is cropped that fits), in dB
relative to the clip's median level and divided by 20: the background sits near 0 and
short clips are padded with 0 (background) frames. Nothing is cached on disk: on the
default synthetic set (1,200 clips) this takes a few seconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
import torchaudio

from audiotag.cleaning.fastmodel import one_thread
from audiotag.core.config import CleanConfig
from audiotag.features.audio import fit_length, load_audio

log = logging.getLogger(__name__)

DB_SCALE = 20.0  # dB per unit: a 20 dB event over the background becomes ~1.0
TOP_DB = 80.0  # dynamic range kept below each clip's loudest bin


AMIN = 1e-10  # power floor before the log


def _mel(cfg: CleanConfig) -> torchaudio.transforms.MelSpectrogram:
    # its own small front end (not audiotag.features): editing the features stage's
    # front end must not re-run label cleaning
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        f_min=20.0, f_max=cfg.sample_rate / 2, n_mels=cfg.n_mels, power=2.0, center=True,
        pad_mode="reflect", norm="slaney", mel_scale="slaney")


def n_fast_frames(cfg: CleanConfig) -> int:
    """Frames of every fast log-mel image."""
    return 1 + int(round(cfg.max_seconds * cfg.sample_rate)) // cfg.hop_length


def fast_logmel(paths: Sequence[str | os.PathLike[str]], cfg: CleanConfig) -> np.ndarray:
    """``(n_clips, n_mels, frames)`` float32 images of the clips at ``paths`` (see module doc)."""
    mel = _mel(cfg)
    frames = n_fast_frames(cfg)
    max_samples = int(round(cfg.max_seconds * cfg.sample_rate))
    out = np.zeros((len(paths), cfg.n_mels, frames), dtype=np.float32)
    with torch.no_grad(), one_thread():
        for i, path in enumerate(paths):
            wave = load_audio(path, cfg.sample_rate)
            if wave.shape[-1] > max_samples:  # centre crop; shorter clips are padded below
                wave = fit_length(wave, max_samples, "zeros")
            db = 10.0 * torch.log10(torch.clamp(mel(wave), min=AMIN))  # (n_mels, frames_i)
            db = torch.maximum(db, db.max() - TOP_DB)
            db = (db - db.median()) / DB_SCALE
            n = min(frames, db.shape[-1])
            out[i, :, :n] = db[:, :n].numpy()
    log.info("fast log-mel: %d clips -> %s", len(paths), out.shape[1:])
    return out
