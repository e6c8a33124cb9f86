"""Which training clips an epoch draws: a plain shuffle, or class-balanced draws.

``train.sampler: balanced`` draws clips with replacement, each with a weight of one over the
number of training clips carrying its rarest label: a multi-label clip counts for its
rarest class, a single-label clip gets inverse class frequency. Draws come from the run's
seeded generator, so a seeded run is repeatable.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import RandomSampler, Sampler, SubsetRandomSampler


def rarest_label_weights(targets: np.ndarray) -> np.ndarray:
    """``(N,)`` sampling weight of each clip from its multi-hot ``targets`` ``(N, C)``:
    ``1 / count`` of its rarest label among these clips. A clip without labels weighs as
    one of the most common class (it balances nothing)."""
    positive = np.asarray(targets) > 0
    counts = positive.sum(axis=0).astype(np.float64)  # (C,)
    if not positive.any():
        return np.ones(len(positive))
    inverse = np.where(positive, 1.0 / np.maximum(counts, 1.0), 0.0)  # (N, C)
    weights = inverse.max(axis=1)
    return np.where(weights > 0, weights, 1.0 / counts.max())


class BalancedSampler(Sampler[int]):
    """``len(indices)`` draws with replacement from ``indices`` (dataset positions), with
    probability proportional to ``weights`` (one per index)."""

    def __init__(self, indices: Sequence[int], weights: np.ndarray,
                 generator: torch.Generator) -> None:
        self.indices = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        self.weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        self.generator = generator

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        drawn = torch.multinomial(self.weights, len(self.indices), replacement=True,
                                  generator=self.generator)
        return iter(self.indices[drawn].tolist())


def clip_sampler(mode: str, targets: np.ndarray, generator: torch.Generator,
                 indices: Sequence[int] | None = None) -> Sampler[int]:
    """The sampler of ``train.sampler`` over the clips at ``indices`` of a dataset whose
    multi-hot class targets are ``targets`` ``(N, C)`` (None: all N clips)."""
    if mode == "balanced":
        chosen = np.arange(len(targets)) if indices is None else np.asarray(indices)
        return BalancedSampler(chosen, rarest_label_weights(np.asarray(targets)[chosen]),
                               generator)
    if mode != "shuffle":
        raise ValueError(f"unknown sampler {mode!r}; known: shuffle, balanced")
    if indices is None:
        return RandomSampler(range(len(targets)), generator=generator)
    return SubsetRandomSampler(list(indices), generator=generator)
