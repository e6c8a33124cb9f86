"""The ``features`` group: front end, clip length, crops and normalisation."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from audiotag.core.params import Strict

PadMode = Literal["wrap", "zeros", "reflect", "mirror"]
Normalize = Literal["standard", "minmax", "none"]
FeatureKind = Literal["waveform", "stft", "logmel", "mfcc", "chroma", "logmel+mfcc",
                      "logmel+chroma"]


class FeaturesConfig(Strict):
    """The ``features`` stage: front end, clip length, crops and normalisation.

    One clip -> ``(dim, frames)`` with ``frames = 1 + samples // hop_length`` (``waveform``:
    ``(1, samples)``); ``dim`` depends on ``kind`` (see ``audiotag.features.frontend``).
    ``eval_crops`` windows cover a clip at evaluation; ``eval_aggregate`` turns their
    scores into the clip's (``max``: a sound heard in any window is present).
    """

    # what a store or checkpoint saved before these keys existed was made with (:meth:`saved`)
    ABSENT_IN_OLD_DUMPS: ClassVar[dict[str, Any]] = {"eval_aggregate": "mean"}
    # experiment options left out of :meth:`dump` at these (default) values, so a store or
    # checkpoint made without them keeps its bytes
    OMITTED_AT_DEFAULT: ClassVar[dict[str, Any]] = {
        "mirror": "none", "normalize_parts": None, "normalize_by": "band", "pca": 0}

    kind: FeatureKind = "logmel"
    sample_rate: int = Field(16000, ge=1000)
    n_fft: int = Field(1024, ge=16)
    hop_length: int = Field(640, ge=1)
    win_length: int | None = Field(None, ge=2)  # None: n_fft
    n_mels: int = Field(64, ge=1)
    fmin: float = Field(20.0, ge=0)
    fmax: float | None = 8000.0  # None: sample_rate / 2
    n_mfcc: int = Field(20, ge=1)
    to_db: bool = True  # 10*log10(max(power, log_offset)); False: ln(power + log_offset)
    log_offset: float = Field(1e-10, gt=0)
    top_db: float | None = Field(80.0, gt=0)
    beat_sync: bool = False
    clip_seconds: float = Field(4.0, gt=0)
    pad_mode: PadMode = "wrap"
    train_crop: Literal["random", "center"] = "random"
    crops_per_clip: int = Field(1, ge=1)
    eval_crops: Literal["center"] | Annotated[int, Field(ge=1)] = 2
    eval_aggregate: Literal["mean", "max"] = "max"
    normalize: Normalize = "standard"
    normalize_parts: list[Normalize] | None = None  # one per part of kind; None: normalize
    normalize_by: Literal["band", "part", "all"] = "band"  # what shares a shift and scale
    mirror: Literal["none", "wave", "spectrogram"] = "none"
    pca: int = Field(0, ge=0)  # 0: off; N: the first N principal components of the bands
    batch_size: int = Field(32, ge=1)
    workers: int = Field(2, ge=0)

    def _check_frames(self) -> None:
        """At least one frame per clip, and every mel filter over some frequency bin (an
        empty one is a constant feature; torchaudio only warns). A waveform has no frames."""
        if self.kind == "waveform":
            return
        if round(self.clip_seconds * self.sample_rate) < self.n_fft:
            raise ValueError(f"clip_seconds={self.clip_seconds:g} s is shorter than one frame "
                             f"(n_fft={self.n_fft} samples at {self.sample_rate} Hz)")
        bins = self.n_fft // 2 + 1
        if bins < self.n_mels:
            raise ValueError(f"n_fft={self.n_fft} gives {bins} frequency bins, too few for "
                             f"n_mels={self.n_mels}: empty mel filters (raise n_fft to at least "
                             f"{2 * (self.n_mels - 1)} or lower n_mels)")

    @model_validator(mode="after")
    def _check_band(self) -> FeaturesConfig:
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        if not self.fmin < fmax <= nyquist:
            raise ValueError(f"need fmin < fmax <= sample_rate/2 ({nyquist:g}); "
                             f"got fmin={self.fmin:g}, fmax={fmax:g}")
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        self._check_frames()
        if "mfcc" in self.kind and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must be <= n_mels ({self.n_mels})")
        self._check_options()
        if self.beat_sync:
            if self.kind == "waveform":
                raise ValueError("beat_sync needs a spectral kind, not kind=waveform")
            if self.crops_per_clip > 1:  # eval_crops: ignored, a sequence is scored whole
                raise ValueError("beat_sync keeps whole variable-length sequences: "
                                 "use crops_per_clip=1")
        return self

    def _check_options(self) -> None:
        """``normalize_parts``, ``mirror`` and ``pca`` against the kind and each other."""
        n_parts = len(self.kind.split("+"))
        if self.normalize_parts is not None and len(self.normalize_parts) != n_parts:
            raise ValueError(f"normalize_parts: {len(self.normalize_parts)} value(s) for "
                             f"kind={self.kind} of {n_parts} part(s) (one per part, in order)")
        if self.mirror != "none" and self.beat_sync:
            raise ValueError("mirror makes every clip clip_seconds long: not with beat_sync")
        if self.mirror == "spectrogram" and self.kind == "waveform":
            raise ValueError("mirror=spectrogram needs a spectral kind (kind=waveform: "
                             "mirror=wave)")
        if self.pca and self.kind == "waveform":
            raise ValueError("pca projects feature bands: kind=waveform has one")
        if self.pca and self.beat_sync:
            raise ValueError("pca: not with beat_sync (variable-length sequences)")
        dims = {"stft": self.n_fft // 2 + 1, "logmel": self.n_mels, "mfcc": self.n_mfcc,
                "chroma": 12, "waveform": 1}  # as audiotag.features.frontend.part_dim
        bands = sum(dims[p] for p in self.kind.split("+"))
        if self.pca > bands:
            raise ValueError(f"pca={self.pca} components of {bands} bands (kind={self.kind})")

    def dump(self) -> dict[str, Any]:
        """The config as a store or checkpoint saves it (:meth:`saved` reads it back)."""
        out = self.model_dump()
        for key, default in self.OMITTED_AT_DEFAULT.items():
            if out[key] == default:
                del out[key]
        return out

    @classmethod
    def saved(cls, dump: dict[str, Any]) -> FeaturesConfig:
        """The config a feature store's ``features.json`` or a checkpoint holds; keys added
        since it was saved get the value it was made with, not today's default."""
        return cls.model_validate({**cls.ABSENT_IN_OLD_DUMPS, **dump})

    @property
    def streamed(self) -> bool:
        """Whether a long clip's features are made piece by piece
        (:mod:`audiotag.features.stream`): not with ``beat_sync`` (the whole waveform is
        tracked) nor ``mirror`` (only the first ``clip_seconds / 2`` is read)."""
        return not self.beat_sync and self.mirror == "none"

    @property
    def n_eval_crops(self) -> int:
        """Windows per clip at evaluation (``center`` = 1)."""
        return 1 if self.eval_crops == "center" else int(self.eval_crops)
