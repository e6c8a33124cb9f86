"""``mixnet``: a waveform branch and a log-mel branch fused before the head.

After the Wavegram-Logmel-CNN of PANNs (Kong et al. 2020, arXiv:1912.10211): the model
takes the raw waveform ``(B, 1, samples)`` (``features.kind: waveform``) and computes two
views of it itself:

* waveform branch: a strided 1-D conv stem (stride 8, then max-pool 4: 32 samples per
  step) and 1-D conv blocks (each halving time) learn a time-frequency map
  ``(B, wave_channels[-1], T_w)`` from the samples;
* spectrogram branch: a log-mel front end (``torchaudio`` mel power spectrogram, in dB,
  then a per-band BatchNorm as input normalisation) and 2-D conv blocks (each halving
  frequency and time), averaged over frequency: ``(B, spec_channels[-1], T_s)``.

Both sequences are average-pooled (adaptive) to the same ``T = min(T_w, T_s)`` steps,
concatenated on the channel axis, and the shared max+mean head gives the clip logits.

Shapes: ``B`` batch, ``C`` channels, ``F`` mel bands, ``T`` steps, ``K`` classes.
"""

from __future__ import annotations

from itertools import pairwise

import torch
from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from torch import Tensor, nn
from torch.nn import functional as F
from torchaudio.transforms import AmplitudeToDB, MelSpectrogram

from audiotag.models.heads import HeadConfig, init_weights, make_activation
from audiotag.models.layers import ConvBlock1d, ConvBlock2d, MaxMeanHead, check_input
from audiotag.models.registry import ChannelList, DropoutRate, register_model


class MixNetConfig(HeadConfig):
    """Params of ``mixnet`` (plus the shared head options of :class:`HeadConfig`).

    Attributes:
        sample_rate: Hz of the input waveform, for the mel filterbank; must equal
            ``features.sample_rate`` (nothing checks this: the model only sees samples).
        n_fft: FFT size (and window length) of the internal log-mel front end; clips
            shorter than ``n_fft`` samples are refused.
        hop_length: samples between log-mel frames (at most ``n_fft``); the default 320
            is 20 ms at 16 kHz (10 ms doubles the spectrogram branch's CPU cost).
        mel_bands: mel bands of the internal front end (independent of
            ``features.n_mels``; not called ``n_mels``, which is ``create_model``'s input
            feature dimension, 1 here).
        wave_channels: waveform branch: channels of the strided stem (``[0]``) and of each
            1-D conv block (conv1d k=5-BN-act-maxpool 2).
        spec_channels: spectrogram branch: output channels of each 2-D conv block
            (conv3x3-BN-act-maxpool 2x2).
        dropout: dropout before each head layer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_rate: int = Field(default=16000, ge=1000)
    n_fft: int = Field(default=512, ge=16)
    hop_length: int = Field(default=320, ge=1)
    mel_bands: int = Field(default=64, ge=1)
    wave_channels: ChannelList = Field(default_factory=lambda: [32, 64, 128])
    spec_channels: ChannelList = Field(default_factory=lambda: [16, 32, 64])
    dropout: DropoutRate = 0.2

    @field_validator("hop_length")
    @classmethod
    def _hop_within_window(cls, value: int, info: ValidationInfo) -> int:
        n_fft = info.data.get("n_fft")  # absent when n_fft itself is invalid
        if n_fft is not None and value > n_fft:
            raise ValueError(f"must be at most n_fft ({n_fft}), or samples are skipped")
        return value


WAVE_KERNEL = 5  # temporal kernel of the waveform branch's conv blocks


# train.init_from: {wave: ..., spec: ...}: each branch from a trained model's layers
# (checkpoint prefix -> own prefix): a cnn1d on waveforms (its strided stem and conv
# blocks; channels = wave_channels) and a cnn2d (its conv blocks; = spec_channels)
INIT_BRANCHES = {"wave": {"stem.": "wave_stem.", "features.": "wave_blocks."},
                 "spec": {"features.": "spec_blocks."}}


@register_model("mixnet", config=MixNetConfig, input="waveform", init_branches=INIT_BRANCHES)
class MixNet(nn.Module):
    """Waveform branch + log-mel branch, fused on the channel axis; max+mean head.

    ``(B, 1, samples) -> (B, num_classes)`` logits. Only raw waveforms
    (``features.kind: waveform``, so ``n_mels == 1``) are accepted: the log-mel view is
    computed inside the model.
    """

    def __init__(self, num_classes: int, n_mels: int, cfg: MixNetConfig) -> None:
        super().__init__()
        if n_mels != 1:
            raise ValueError(
                f"models.mixnet: takes the raw waveform (batch, 1, samples) and computes its "
                f"own log-mel, but the features have {n_mels} bands: use "
                f"features.kind=waveform (with models.mixnet.sample_rate = "
                f"features.sample_rate)")
        self.n_mels = n_mels
        self.cfg = cfg
        wave, spec = cfg.wave_channels, cfg.spec_channels
        # waveform branch: (B, 1, S) -> (B, wave[-1], ~S / 2^(5 + len(wave)))
        self.wave_stem = nn.Sequential(
            nn.Conv1d(1, wave[0], kernel_size=32, stride=8, padding=12, bias=False),
            nn.BatchNorm1d(wave[0]),
            make_activation(cfg.activation, inplace=True),
            nn.MaxPool1d(4, ceil_mode=True),
        )
        self.wave_blocks = nn.Sequential(
            *(ConvBlock1d(c_in, c_out, WAVE_KERNEL, cfg.activation)
              for c_in, c_out in pairwise([wave[0], *wave]))
        )
        # spectrogram branch: (B, 1, S) -> (B, F, S / hop) log-mel -> (B, spec[-1], T_s)
        self.melspec = MelSpectrogram(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft,
                                      hop_length=cfg.hop_length, n_mels=cfg.mel_bands,
                                      power=2.0)
        self.to_db = AmplitudeToDB(stype="power", top_db=None)
        self.mel_norm = nn.BatchNorm1d(cfg.mel_bands)  # per-band input normalisation
        self.spec_blocks = nn.Sequential(
            *(ConvBlock2d(c_in, c_out, (2, 2), cfg.activation)
              for c_in, c_out in pairwise([1, *spec]))
        )
        self.head = MaxMeanHead(wave[-1] + spec[-1], num_classes, cfg=cfg)
        init_weights(self, cfg.init, cfg.activation)

    def log_mel(self, x: Tensor) -> Tensor:
        """Normalised log-mel of the waveform: ``(B, 1, S) -> (B, F, 1 + S // hop)``."""
        # float32 even under mixed precision: power spectra overflow float16
        with torch.autocast(device_type=x.device.type, enabled=False):
            mel = self.to_db(self.melspec(x[:, 0].float()))  # (B, F, T)
        return self.mel_norm(mel)

    def branches(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Both branch outputs before fusion: ``(B, C_w, T_w)`` and ``(B, C_s, T_s)``."""
        check_input(x, 1)
        if x.shape[-1] < self.cfg.n_fft:
            raise ValueError(
                f"models.mixnet: clips must have at least n_fft={self.cfg.n_fft} samples "
                f"({1000 * self.cfg.n_fft / self.cfg.sample_rate:.0f} ms at "
                f"{self.cfg.sample_rate} Hz), got {x.shape[-1]}")
        wave = self.wave_blocks(self.wave_stem(x))  # (B, C_w, T_w)
        spec = self.spec_blocks(self.log_mel(x).unsqueeze(1))  # (B, C_s, F', T_s)
        return wave, spec.mean(dim=2)  # mean over frequency

    def forward(self, x: Tensor) -> Tensor:
        wave, spec = self.branches(x)
        steps = min(wave.shape[-1], spec.shape[-1])
        fused = torch.cat([F.adaptive_avg_pool1d(wave, steps),
                           F.adaptive_avg_pool1d(spec, steps)], dim=1)  # (B, C_w + C_s, T)
        return self.head(fused)  # (B, K)
