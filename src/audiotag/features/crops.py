"""Where to cut fixed-length windows out of a clip's frames (pure functions, easy to test).

Short clips were already padded to ``clip_seconds`` when their features were extracted, so
a clip has at least ``window`` frames; long clips are stored whole and cropped here:
randomly in training, at the centre or at N evenly spaced places at evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Sampler


def center_start(length: int, window: int) -> int:
    """Start of the centred window (0 when the clip is not longer than the window)."""
    return max(0, (length - window) // 2)


def eval_starts(length: int, window: int, n: int) -> list[int]:
    """``n == 1``: the centre window; ``n > 1``: ``n`` windows evenly spaced from the
    first frame to the last (they overlap when the clip is shorter than ``n`` windows)."""
    if n == 1:
        return [center_start(length, window)]
    last = max(0, length - window)
    return [int(round(s)) for s in np.linspace(0, last, n)]


def random_start(length: int, window: int, generator: torch.Generator | None = None) -> int:
    """Uniform start in ``[0, length - window]``, drawn from ``generator`` (else torch's
    global RNG)."""
    last = max(0, length - window)
    return int(torch.randint(0, last + 1, (1,), generator=generator).item())


def cut(frames: np.ndarray, start: int, window: int) -> np.ndarray:
    """``frames[start:start + window]`` along axis 0, zero-padded at the end if short."""
    out = frames[start:start + window]
    if out.shape[0] < window:
        pad = [(0, window - out.shape[0])] + [(0, 0)] * (out.ndim - 1)
        out = np.pad(out, pad)
    return out


class CropSeedSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, seed)``: the indices of ``sampler`` (its order), each with a crop
    seed drawn from ``generator`` in the main process.

    A :class:`~audiotag.features.store.FeatureSet` item asked for by ``(index, seed)`` draws
    its random crops from that seed, so the crops depend on the seeds only, not on which
    process loads the item: training gives the same result whatever ``train.num_workers``
    (DataLoader workers have RNGs of their own).
    """

    def __init__(self, sampler: Sampler[int], generator: torch.Generator) -> None:
        self.sampler, self.generator = sampler, generator

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.sampler:
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            yield index, seed

    def __len__(self) -> int:
        assert isinstance(self.sampler, Sized)
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to a DistributedSampler (a new shuffle per epoch)."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
