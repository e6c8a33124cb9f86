"""A feature store's clips read torch-free: where evaluation windows start, how a window is
cut and normalised, and :class:`StoredClips`, a clip's evaluation input as numpy.

Short clips were already padded to ``clip_seconds`` when their features were extracted, so
a clip has at least ``window`` frames; long clips are stored whole and cropped: at the
centre or at N evenly spaced places at evaluation (here), randomly in training
(:mod:`audiotag.features.crops`). The training data set
(:class:`audiotag.features.store.FeatureSet`) and the explore stage build inputs the same
way, from the same memory-mapped arrays (:class:`MappedFrames`).
"""

from __future__ import annotations

import mmap
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


RELEASE_BYTES = 64 * 2**20  # read this much, then drop the mapped pages (MappedFrames)


class MappedFrames:
    """The frame arrays ``(frames, dim)`` of a store's subsets, memory-mapped read-only.

    A read maps the pages it touches into this process, and they stay mapped: a pass over
    a large store (an epoch, the detector's folds, scoring every clip) would end with the
    whole store in the process's resident set, growing with the dataset though nothing
    holds it. So after every ``RELEASE_BYTES`` read the mappings' pages are dropped
    (``madvise(MADV_DONTNEED)``): the kernel's page cache keeps them, and a later read maps
    them again from it, with the same bytes. Pickling reopens the files (DataLoader workers
    started by ``spawn``) instead of copying the arrays.
    """

    def __init__(self, store_dir: str | os.PathLike[str]) -> None:
        self.store = Path(store_dir)
        self._open()

    def _open(self) -> None:
        self._maps: dict[str, mmap.mmap] = {}
        self._arrays: dict[str, np.ndarray] = {}
        for subset in SUBSETS:
            array = np.load(self.store / f"{subset}.npy", mmap_mode="r")
            self._arrays[subset] = array
            if isinstance(array.base, mmap.mmap):  # np.memmap's own map of the file
                self._maps[subset] = array.base
        self._read = 0

    def read(self, subset: str, start: int, length: int) -> np.ndarray:
        """Rows ``start:start + length`` of ``subset``'s array ``(length, dim)``: a view of
        the mapping, valid after a release too (its pages are then read again)."""
        frames = self._arrays[subset][start:start + length]
        self._read += frames.nbytes
        if self._read >= RELEASE_BYTES:
            self.release()
        return frames

    def release(self) -> None:
        """Drop every mapped page from this process's resident set (where the OS can)."""
        self._read = 0
        for mapped in self._maps.values():
            if hasattr(mapped, "madvise") and len(mapped):
                mapped.madvise(mmap.MADV_DONTNEED)

    def __getstate__(self) -> dict:
        return {"store": self.store}

    def __setstate__(self, state: dict) -> None:
        self.store = state["store"]
        self._open()


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
        self._frames = MappedFrames(store)

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
        frames = self._frames.read(row["subset"], start, length)  # (T, dim) float16
        n = self.config.n_eval_crops
        starts = None if self.config.beat_sync else eval_starts(length, self.window, n)
        x = normalised_windows(frames, starts, self.window, self.shift, self.scale,
                               self.projection)
        return x[0] if n == 1 or self.config.beat_sync else x
