"""Random training crops: where a training window starts (the evaluation windows:
:mod:`audiotag.features.frames`), and the sampler that seeds each item's crops.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import NamedTuple

import torch
from torch.utils.data import Sampler


def random_start(length: int, window: int, generator: torch.Generator | None = None) -> int:
    """Uniform start in ``[0, length - window]``, drawn from ``generator`` (else torch's
    global RNG)."""
    last = max(0, length - window)
    return int(torch.randint(0, last + 1, (1,), generator=generator).item())


class SeededIndex(NamedTuple):
    """A dataset key: item ``index`` whose random crops are drawn from ``seed``."""

    index: int
    seed: int


class CropSeedSampler(Sampler[SeededIndex]):
    """Yields :class:`SeededIndex` es: the indices of ``sampler`` (its order), each with a
    crop seed drawn from ``generator`` in the main process.

    A :class:`~audiotag.features.store.FeatureSet` item asked for by a ``SeededIndex`` draws
    its random crops from that seed, so the crops depend on the seeds only, not on which
    process loads the item: training gives the same result whatever ``train.num_workers``
    (DataLoader workers have RNGs of their own).
    """

    def __init__(self, sampler: Sampler[int], generator: torch.Generator) -> None:
        self.sampler, self.generator = sampler, generator

    def __iter__(self) -> Iterator[SeededIndex]:
        for index in self.sampler:
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            yield SeededIndex(index, seed)

    def __len__(self) -> int:
        assert isinstance(self.sampler, Sized)
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Forwarded to a DistributedSampler (a new shuffle per epoch)."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
