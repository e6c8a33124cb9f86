"""The log-mel front end (kept as a name; the work is done by :mod:`.frontend`)."""

from __future__ import annotations

from audiotag.features.config import FeaturesConfig
from audiotag.features.frontend import FrontEnd, clip_samples, n_frames

AMIN = 1e-10  # power floor before log10, as librosa.power_to_db's default

__all__ = ["AMIN", "LogMel", "clip_samples", "n_frames"]


class LogMel(FrontEnd):
    """Waveform ``(B, samples)`` -> log-mel power in dB ``(B, n_mels, frames)``.

    Slaney mel scale and Slaney filter normalisation (librosa's defaults), power spectrum,
    centred frames with reflect padding: ``frames = 1 + samples // hop_length``.
    ``top_db`` clips each clip's dynamic range relative to *its own* maximum.
    """

    def __init__(self, cfg: FeaturesConfig) -> None:
        super().__init__(cfg.model_copy(update={"kind": "logmel"}))
