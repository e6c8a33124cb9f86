"""The log-mel front end (torchaudio)."""

from __future__ import annotations

import torch
import torchaudio

from audiotag.core.config import FeaturesConfig

AMIN = 1e-10  # power floor before log10, as librosa.power_to_db's default


class LogMel(torch.nn.Module):
    """Waveform ``(B, samples)`` -> log-mel power in dB ``(B, n_mels, frames)``.

    Slaney mel scale and Slaney filter normalisation (librosa's defaults), power spectrum,
    centred frames with reflect padding: ``frames = 1 + samples // hop_length``.
    ``top_db`` clips each clip's dynamic range relative to *its own* maximum
    (torchaudio's ``AmplitudeToDB`` on a 3-D batch would use the whole batch's maximum,
    making a clip's features depend on its batch-mates).
    """

    def __init__(self, cfg: FeaturesConfig) -> None:
        super().__init__()
        self.top_db = cfg.top_db
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
            f_min=cfg.fmin, f_max=cfg.fmax, n_mels=cfg.n_mels, power=2.0, center=True,
            pad_mode="reflect", norm="slaney", mel_scale="slaney",
        )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        power = self.mel(wave)  # (B, n_mels, frames)
        db = 10.0 * torch.log10(torch.clamp(power, min=AMIN))
        if self.top_db is not None:
            floor = db.amax(dim=(-2, -1), keepdim=True) - self.top_db
            db = torch.maximum(db, floor)
        return db


def n_frames(cfg: FeaturesConfig) -> int:
    """Frames per fixed-length clip."""
    return 1 + clip_samples(cfg) // cfg.hop_length


def clip_samples(cfg: FeaturesConfig) -> int:
    return int(round(cfg.clip_seconds * cfg.sample_rate))
