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
from torch import Tensor, nn
from torch.nn import functional as F
from torchaudio.transforms import AmplitudeToDB, MelSpectrogram

from audiotag.contracts.model_configs import MixNetConfig
from audiotag.models.heads import init_weights, make_activation
from audiotag.models.layers import ConvBlock1d, ConvBlock2d, MaxMeanHead, check_input
from audiotag.models.outputs import Outputs, Tagger
from audiotag.models.registry import register_model

WAVE_KERNEL = 5  # temporal kernel of the waveform branch's conv blocks


@register_model("mixnet")
class MixNet(Tagger):
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

    def outputs(self, x: Tensor) -> Outputs:
        wave, spec = self.branches(x)
        steps = min(wave.shape[-1], spec.shape[-1])
        fused = torch.cat([F.adaptive_avg_pool1d(wave, steps),
                           F.adaptive_avg_pool1d(spec, steps)], dim=1)  # (B, C_w + C_s, T)
        return Outputs(self.head(fused))  # (B, K)
