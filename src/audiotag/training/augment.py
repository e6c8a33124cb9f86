"""Batch augmentations applied in the training loop: signal augmentation (gain, time
shift, background mixing), mixup and SpecAugment masks, composed by :class:`BatchAugment`.

All draw from a ``torch.Generator`` owned by the loop, so a seeded run is repeatable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from audiotag.features.store import Batch

SIGNAL_DOMAINS = ("waveform", "db", "ln")


def mixup(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, alpha: float,
          generator: torch.Generator | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mix each clip with a random partner from the batch (Zhang et al. 2018).

    One ``lam ~ Beta(alpha, alpha)`` per batch mixes inputs, targets and loss weights with
    the same coefficient: ``x' = lam * x + (1 - lam) * x[perm]`` (likewise y, w). Regression
    targets that are unknown (NaN) in either partner stay unknown. Returns
    ``(x', y', w', lam)``; ``alpha <= 0`` returns the batch unchanged with ``lam = 1``.
    """
    (mixed_x, mixed_y, mixed_w), lam, _ = mix_batch([x, y, w], alpha, generator)
    return mixed_x, mixed_y, mixed_w, lam


def mix_batch(tensors: list[torch.Tensor], alpha: float,
              generator: torch.Generator | None = None
              ) -> tuple[list[torch.Tensor], float, torch.Tensor | None]:
    """:func:`mixup` of any number of per-clip tensors (first axis = batch), all with one
    ``lam`` and one partner permutation; returns ``(mixed, lam, perm)`` (perm None when
    nothing was mixed)."""
    batch = tensors[0].shape[0]
    if alpha <= 0 or batch < 2:
        return list(tensors), 1.0, None
    lam = _beta_sample(alpha, generator)
    perm = torch.randperm(batch, generator=generator)
    mixed = []
    for t in tensors:
        partner = t[perm.to(t.device)]
        mixed.append(lam * t + (1 - lam) * partner)
    return mixed, lam, perm


def _beta_sample(alpha: float, generator: torch.Generator | None) -> float:
    """One draw of Beta(alpha, alpha) driven by ``generator`` (None: torch's global RNG).

    ``torch.distributions.Beta`` cannot take a generator, so a NumPy generator is seeded
    from it: mixup stays on the loop's seeded random stream."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def spec_augment(x: torch.Tensor, freq_masks: int, freq_width: int, time_masks: int,
                 time_width: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment masks (Park et al. 2019) on a batch ``(B, F, T)``, new masks per clip.

    Each of ``freq_masks`` bands of width ``U[0, freq_width]`` and ``time_masks`` spans of
    width ``U[0, time_width]`` is set to the clip's mean (0 for standardised features),
    so masking does not shift the input statistics. Returns a new tensor.
    """
    if x.dim() != 3:
        raise ValueError(f"spec_augment expects (batch, features, frames), got {tuple(x.shape)}")
    out = x.clone()
    batch, n_feat, n_frames = x.shape
    fill = x.mean(dim=(1, 2))  # (B,)
    for axis, count, width, size in ((1, freq_masks, freq_width, n_feat),
                                     (2, time_masks, time_width, n_frames)):
        if count <= 0 or width <= 0:
            continue
        for _ in range(count):
            widths = torch.randint(0, min(width, size) + 1, (batch,), generator=generator)
            starts = (torch.rand(batch, generator=generator) * (size - widths + 1)).long()
            pos = torch.arange(size)
            mask = (pos[None, :] >= starts[:, None]) & (pos[None, :] < (starts + widths)[:, None])
            mask = mask.to(x.device)  # (B, size)
            shape = (batch, size, 1) if axis == 1 else (batch, 1, size)
            out = torch.where(mask.view(shape), fill.view(batch, 1, 1), out)
    return out


@dataclass(frozen=True)
class SignalAugment:
    """Gain, circular time shift and background mixing of a batch of normalised features.

    The feature store keeps features un-normalised and the batch is normalised with the
    training statistics (``x = (raw - shift) / scale`` per band), so each clip is taken
    back to ``raw``, changed there as its signal would be, and normalised again:

    - ``domain="waveform"``: gain multiplies the samples by ``10^(g/20)``; a background
      clip is added sample by sample;
    - ``domain="db"`` / ``"ln"`` (log-power features: logmel, stft): gain adds ``g`` dB
      (``g ln(10) / 10`` in ln units); a background is added in the power domain,
      ``log(P + P_background)`` (``log_offset`` and ``top_db`` floors are not undone).

    Per clip (per crop with several crops): gain ``U[-gain_db, gain_db]`` dB, a shift of
    ``U[-max_shift, max_shift]`` of the frames (circular), and with probability
    ``background`` another clip of the batch, attenuated by ``U[background_db,
    background_db + 10]`` dB, as background; the clip keeps its labels.
    """

    domain: str
    shift: torch.Tensor  # (dim,) normalisation shift of the store
    scale: torch.Tensor  # (dim,)
    gain_db: float = 0.0
    max_shift: float = 0.0
    background: float = 0.0
    background_db: float = 10.0

    def __post_init__(self) -> None:
        if self.domain not in SIGNAL_DOMAINS:
            raise ValueError(f"unknown signal domain {self.domain!r}; known: "
                             f"{', '.join(SIGNAL_DOMAINS)}")

    def _gain(self, raw: torch.Tensor, db: torch.Tensor) -> torch.Tensor:  # db (n, 1, 1)
        if self.domain == "waveform":
            return raw * 10 ** (db / 20)
        return raw + (db if self.domain == "db" else db * math.log(10) / 10)

    def _add(self, raw: torch.Tensor, other: torch.Tensor, att: torch.Tensor) -> torch.Tensor:
        quiet = self._gain(other, -att)  # the background, attenuated by att dB
        if self.domain == "waveform":
            return raw + quiet
        unit = math.log(10) / 10 if self.domain == "db" else 1.0  # log units -> ln
        return torch.logaddexp(raw * unit, quiet * unit) / unit  # log(P + P_background)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """Augmented copy of ``x`` ``(B, dim, T)`` or ``(B, K, dim, T)``."""
        shape, device = x.shape, x.device
        flat = x.reshape(-1, shape[-2], shape[-1])  # (n, dim, T)
        n, dim, frames = flat.shape
        shift = self.shift.to(device, x.dtype).view(1, dim, 1)
        scale = self.scale.to(device, x.dtype).view(1, dim, 1)
        raw = flat * scale + shift
        if self.gain_db > 0:
            db = (torch.rand(n, generator=generator) * 2 - 1) * self.gain_db
            raw = self._gain(raw, db.to(device, x.dtype).view(n, 1, 1))
        most = int(self.max_shift * frames)
        if most > 0:
            offsets = torch.randint(-most, most + 1, (n,), generator=generator).to(device)
            pos = (torch.arange(frames, device=device)[None, :] - offsets[:, None]) % frames
            raw = raw.gather(2, pos[:, None, :].expand(n, dim, frames))
        if self.background > 0 and n > 1:
            chosen = torch.rand(n, generator=generator) < self.background
            partner = (torch.arange(n) + torch.randint(1, n, (n,), generator=generator)) % n
            att = self.background_db + 10 * torch.rand(n, generator=generator)
            mixed = self._add(raw, raw[partner.to(device)],
                              att.to(device, x.dtype).view(n, 1, 1))
            raw = torch.where(chosen.to(device).view(n, 1, 1), mixed, raw)
        return ((raw - shift) / scale).view(shape)


@dataclass(frozen=True)
class SpecAugmentMasks:
    """``train.specaug_*``: masks per clip and their widest span (bands, frames)."""

    freq_masks: int
    freq_width: int
    time_masks: int
    time_width: int


@dataclass(frozen=True)
class BatchAugment:
    """A training batch's augmentation, in its fixed order: signal (``train.aug_*``, on
    each clip's own signal) -> mixup (clips, targets, weights and noisy flags alike) ->
    SpecAugment (each crop masked on its own). Every draw comes from ``generator``."""

    signal: SignalAugment | None = None
    mixup_alpha: float = 0.0
    masks: SpecAugmentMasks | None = None

    def __call__(self, b: Batch, generator: torch.Generator) -> Batch:
        if self.signal is not None:
            b = replace(b, x=self.signal(b.x, generator))
        if self.mixup_alpha > 0:
            (x, y, w, noisy), _, perm = mix_batch([b.x, b.y, b.w, b.noisy], self.mixup_alpha,
                                                   generator)
            lengths = b.lengths
            if perm is not None and lengths is not None:  # a mix is as long as its longer clip
                lengths = torch.maximum(lengths, lengths[perm.to(lengths.device)])
            b = Batch(x, y, w, noisy, lengths)
        if self.masks is not None:
            m, shape = self.masks, b.x.shape
            flat = b.x.reshape(-1, shape[-2], shape[-1])  # (B * K, dim, T)
            flat = spec_augment(flat, m.freq_masks, m.freq_width, m.time_masks, m.time_width,
                                generator)
            b = replace(b, x=flat.view(shape))
        return b
