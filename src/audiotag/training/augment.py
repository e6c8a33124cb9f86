"""Batch augmentations applied in the training loop: mixup and SpecAugment masks.

Both draw from a ``torch.Generator`` owned by the loop, so a seeded run is repeatable.
"""

from __future__ import annotations

import numpy as np
import torch


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
