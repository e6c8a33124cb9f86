"""Feature front ends: one waveform -> ``(dim, frames)`` for every ``features.kind``.

Every spectral kind shares one STFT (periodic Hann window of ``win_length`` zero-padded to
``n_fft``, centred frames with reflect padding: ``frames = 1 + samples // hop_length``):

==========  ======================  =====================================================
kind        dim                     values
==========  ======================  =====================================================
waveform    1                       the samples themselves (``frames`` = samples)
stft        n_fft // 2 + 1          log power spectrum (dB, or ln with ``to_db: false``)
logmel      n_mels                  log mel power, Slaney mel scale + Slaney filter norm
mfcc        n_mfcc                  orthonormal DCT-II of the log mel (as librosa)
chroma      12                      chroma filterbank on the power spectrum, each frame
                                    scaled to max 1 (librosa.feature.chroma_stft, tuning 0)
a+b         dim(a) + dim(b)         parts stacked on the band axis; normalisation is per
                                    band, so every part keeps its own statistics
==========  ======================  =====================================================

``top_db`` clips each clip's dB range to *its own* maximum minus ``top_db`` (per part),
never the batch's, so a clip's features do not depend on its batch-mates.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torchaudio.functional as AF

from audiotag.features.config import FeaturesConfig

N_CHROMA = 12


def part_names(kind: str) -> list[str]:
    """``"logmel+mfcc"`` -> ``["logmel", "mfcc"]``."""
    return kind.split("+")


def part_dim(part: str, cfg: FeaturesConfig) -> int:
    return {"waveform": 1, "stft": cfg.n_fft // 2 + 1, "logmel": cfg.n_mels,
            "mfcc": cfg.n_mfcc, "chroma": N_CHROMA}[part]


def feature_parts(cfg: FeaturesConfig) -> list[dict]:
    """``[{"name", "start", "stop"}]``: which bands of the stacked features each part holds."""
    parts, start = [], 0
    for name in part_names(cfg.kind):
        stop = start + part_dim(name, cfg)
        parts.append({"name": name, "start": start, "stop": stop})
        start = stop
    return parts


def feature_dim(cfg: FeaturesConfig) -> int:
    return feature_parts(cfg)[-1]["stop"]


@functools.lru_cache(maxsize=8)
def _chroma_filters(sample_rate: int, n_fft: int) -> torch.Tensor:
    import librosa  # only the chroma kinds need it

    fb = librosa.filters.chroma(sr=sample_rate, n_fft=n_fft, n_chroma=N_CHROMA, tuning=0.0)
    return torch.from_numpy(fb.astype(np.float32))  # (12, n_fft // 2 + 1)


class FrontEnd(torch.nn.Module):
    """Waveform ``(B, samples)`` -> features ``(B, dim, frames)`` of ``cfg.kind``."""

    def __init__(self, cfg: FeaturesConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.parts = part_names(cfg.kind)
        win = cfg.win_length or cfg.n_fft
        self.register_buffer("window", torch.hann_window(win, periodic=True), persistent=False)
        fmax = cfg.fmax if cfg.fmax is not None else cfg.sample_rate / 2
        mel = AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.fmin, fmax, cfg.n_mels, cfg.sample_rate,
                                 norm="slaney", mel_scale="slaney")  # (freqs, n_mels)
        self.register_buffer("mel_fb", mel.T.contiguous(), persistent=False)  # (n_mels, freqs)
        dct = AF.create_dct(cfg.n_mfcc, cfg.n_mels, norm="ortho")  # (n_mels, n_mfcc)
        self.register_buffer("dct", dct.T.contiguous(), persistent=False)  # (n_mfcc, n_mels)
        if "chroma" in self.parts:
            self.register_buffer("chroma_fb", _chroma_filters(cfg.sample_rate, cfg.n_fft),
                                 persistent=False)

    def power(self, wave: torch.Tensor) -> torch.Tensor:
        """Power spectrogram ``(B, n_fft // 2 + 1, frames)``."""
        spec = torch.stft(wave, self.cfg.n_fft, self.cfg.hop_length, self.window.shape[0],
                          self.window, center=True, pad_mode="reflect", return_complex=True)
        return spec.real.square() + spec.imag.square()

    def log(self, power: torch.Tensor, peak: torch.Tensor | None = None) -> torch.Tensor:
        """dB (``to_db``) with the per-clip ``top_db`` floor, else ``ln(power + offset)``.
        ``peak``: the clip's dB maximum ``(B, 1, 1)`` when ``power`` is only part of it."""
        if not self.cfg.to_db:
            return torch.log(power + self.cfg.log_offset)
        db = self._db(power)
        if self.cfg.top_db is not None:
            top = db.amax(dim=(-2, -1), keepdim=True) if peak is None else peak
            db = torch.maximum(db, top - self.cfg.top_db)
        return db

    def _db(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(power, min=self.cfg.log_offset))

    def peaks(self, power: torch.Tensor) -> dict[str, torch.Tensor]:
        """The dB maxima ``(B, 1, 1)`` that ``top_db`` floors from, per log part (``stft``,
        ``mel``), of a power spectrogram (:meth:`power`): the maxima over a clip's pieces
        are the clip's, so a long clip is made piece by piece
        (:mod:`audiotag.features.stream`) with the floor of the whole."""
        if not (self.cfg.to_db and self.cfg.top_db is not None) or self.parts == ["waveform"]:
            return {}
        out = {}
        if "stft" in self.parts:
            out["stft"] = self._db(power).amax(dim=(-2, -1), keepdim=True)
        if {"logmel", "mfcc"} & set(self.parts):
            out["mel"] = self._db(torch.matmul(self.mel_fb, power)).amax(dim=(-2, -1),
                                                                         keepdim=True)
        return out

    def forward(self, wave: torch.Tensor,
                peaks: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``peaks``: :meth:`peaks` of the whole clip when ``wave`` is a piece of it."""
        peaks = peaks or {}
        if self.parts == ["waveform"]:
            return wave.unsqueeze(-2)  # (B, 1, samples)
        power = self.power(wave)
        out = []
        logmel = None
        for part in self.parts:
            if part == "stft":
                out.append(self.log(power, peaks.get("stft")))
            elif part in ("logmel", "mfcc"):
                if logmel is None:
                    logmel = self.log(torch.matmul(self.mel_fb, power),  # (B, n_mels, T)
                                      peaks.get("mel"))
                out.append(logmel if part == "logmel" else torch.matmul(self.dct, logmel))
            elif part == "chroma":
                chroma = torch.matmul(self.chroma_fb, power)  # (B, 12, T)
                out.append(chroma / chroma.amax(dim=-2, keepdim=True).clamp_min(1e-10))
            else:  # guarded by FeaturesConfig.kind
                raise ValueError(f"features.kind: unknown part {part!r}")
        return torch.cat(out, dim=-2) if len(out) > 1 else out[0]


def n_frames(cfg: FeaturesConfig, samples: int | None = None) -> int:
    """Frames of a clip of ``samples`` (default: ``clip_seconds``); the crop window length."""
    samples = clip_samples(cfg) if samples is None else samples
    return samples if cfg.kind == "waveform" else 1 + samples // cfg.hop_length


def clip_samples(cfg: FeaturesConfig) -> int:
    return max(1, int(round(cfg.clip_seconds * cfg.sample_rate)))


def frames_per_second(cfg: FeaturesConfig) -> float:
    return cfg.sample_rate if cfg.kind == "waveform" else cfg.sample_rate / cfg.hop_length


def log_floor(cfg: FeaturesConfig) -> float:
    """The value of silence after the log (used to check and document padding)."""
    return (10 * math.log10(cfg.log_offset)) if cfg.to_db else math.log(cfg.log_offset)
