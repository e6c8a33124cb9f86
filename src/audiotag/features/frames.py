"""A feature store's clips read torch-free: where evaluation windows start, how a window is
cut and normalised, and :class:`StoredClips`, a clip's evaluation input as numpy.

Short clips were already padded to ``clip_seconds`` when their features were extracted, so
a clip has at least ``window`` frames; long clips are stored whole and cropped: at the
centre or at N evenly spaced places at evaluation (here), randomly in training
(:mod:`audiotag.features.crops`). The training data set
(:class:`audiotag.features.store.FeatureSet`) and the explore stage build inputs the same
way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from audiotag.contracts.store import FEATURES_NAME, STATS_NAME, read_store_index
from audiotag.core.io import read_json
from audiotag.data.manifest import CLASSES_NAME, SUBSETS, read_classes
from audiotag.features.config import FeaturesConfig


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


def cut(frames: np.ndarray, start: int, window: int) -> np.ndarray:
    """``frames[start:start + window]`` along axis 0, zero-padded at the end if short."""
    out = frames[start:start + window]
    if out.shape[0] < window:
        pad = [(0, window - out.shape[0])] + [(0, 0)] * (out.ndim - 1)
        out = np.pad(out, pad)
    return out


def normalised_windows(frames: np.ndarray, starts: list[int] | None, window: int,
                       shift: np.ndarray, scale: np.ndarray,
                       projection: np.ndarray | None = None) -> np.ndarray:
    """Normalised model input ``(K, dim, window)`` float32 of a clip's stored frames
    ``(T, dim)``: the windows at ``starts`` (zero-padded if short), or with ``starts=None``
    the whole sequence ``(1, dim, T)`` (``beat_sync``). ``projection`` ``(dim, n)``
    (``features.pca``): the normalised bands projected on it, ``(K, n, window)``."""
    crops = [np.asarray(frames)] if starts is None else [cut(frames, s, window) for s in starts]
    x = (np.stack(crops).astype(np.float32) - shift) / scale  # (K, T, dim)
    if projection is not None:
        x = x @ projection  # (K, T, n)
    return np.ascontiguousarray(x.transpose(0, 2, 1))  # (K, dim, T)


def projection_of(stats: dict) -> np.ndarray | None:
    """A store's ``features.pca`` projection ``(dim, n)`` float32 (None without pca)."""
    found = stats.get("projection")
    return None if found is None else np.asarray(found, dtype=np.float32)


class StoredClips:
    """The clips of a feature store with given roles: their index rows, the classes, the
    features config and each clip's evaluation input (``features.eval_crops`` windows,
    normalised with the training statistics) as numpy, memory-mapped."""

    def __init__(self, store_dir: str | os.PathLike[str], roles: tuple[str, ...]) -> None:
        store = Path(store_dir)
        self.index = read_store_index(store, roles)
        self.classes = read_classes(store / CLASSES_NAME)
        self.stats = read_json(store / STATS_NAME)
        self.meta = read_json(store / FEATURES_NAME)
        self.config = FeaturesConfig.saved(self.meta["config"])
        self.shift = np.asarray(self.stats["shift"], dtype=np.float32)  # (dim,)
        self.scale = np.asarray(self.stats["scale"], dtype=np.float32)
        self.projection = projection_of(self.stats)
        self.window = int(self.meta["frames"])
        self._arrays = {s: np.load(store / f"{s}.npy", mmap_mode="r") for s in SUBSETS}

    def __len__(self) -> int:
        return len(self.index)

    @property
    def kind(self) -> str:
        return self.config.kind

    def eval_input(self, i: int) -> np.ndarray:
        """Clip ``i``'s evaluation input: ``(dim, T)``, or ``(N, dim, T)`` with
        ``features.eval_crops: N > 1`` (the whole ``(dim, beats + 1)`` with ``beat_sync``)."""
        row = self.index.iloc[i]
        start, length = int(row["offset"]), int(row["length"])
        frames = self._arrays[row["subset"]][start:start + length]  # (T, dim) float16
        n = self.config.n_eval_crops
        starts = None if self.config.beat_sync else eval_starts(length, self.window, n)
        x = normalised_windows(frames, starts, self.window, self.shift, self.scale,
                               self.projection)
        return x[0] if n == 1 or self.config.beat_sync else x
