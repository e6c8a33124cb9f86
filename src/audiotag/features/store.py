"""The feature store: what the ``features`` stage writes and training reads.

Layout of a store directory::

    <subset>.npy    float16 (total_frames, dim), one per subset, memory-mapped: every
                    clip's frames one after the other (long clips whole, short clips
                    padded to clip_seconds with pad_mode)
    index.csv       clip_id, subset, row, offset, length (frames of the clip in
                    <subset>.npy), role, fold, labels [, true_labels, weight, targets_*]
    classes.txt     class order of every label matrix
    stats.json      per-band statistics (mean, std, min, max) fitted on the clips whose
                    role is ``train`` only, and the ``shift``/``scale`` that ``normalize``
                    picked from them
    features.json   the FeaturesConfig that made it, the feature dim, the parts of a
                    stacked kind and the crop window (frames)

Features are stored un-normalised and uncropped; :class:`FeatureSet` crops and normalises
on read, so validation and test are transformed with training statistics.
"""

from __future__ import annotations

import copy
import logging
import math
import multiprocessing
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from audiotag.contracts.store import (
    FEATURES_NAME,
    INDEX_NAME,
    STATS_NAME,
    index_columns,
    read_store_index,
)
from audiotag.contracts.tables import read_clip_table
from audiotag.core.errors import AudioError
from audiotag.core.io import atomic_dir, read_json, write_json, write_text
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import (
    CLASSES_NAME,
    SUBSETS,
    TARGET_PREFIX,
    audio_paths,
    labels_to_matrix,
    read_classes,
)
from audiotag.data.precomputed import ARRAY_SUFFIX, load_array
from audiotag.data.split import assign_roles
from audiotag.features.audio import audio_blocks, load_audio, pad_to_length
from audiotag.features.config import FeaturesConfig
from audiotag.features.crops import SeededIndex, random_start
from audiotag.features.frames import (
    MappedFrames,
    center_start,
    eval_starts,
    normalised_windows,
    projection_of,
)
from audiotag.features.frontend import (
    FrontEnd,
    clip_samples,
    feature_dim,
    feature_parts,
    n_frames,
)
from audiotag.features.stream import clip_frames

log = logging.getLogger(__name__)
STD_FLOOR = 1e-5  # a constant band (e.g. above fmax of resampled audio) must not divide by 0
HEADER_BYTES = 128  # fixed .npy header, rewritten with the final shape after streaming


# ---------------------------------------------------------------- per-clip extraction


class ClipExtractor:
    """Path -> features ``(frames, dim)`` float16 of one clip (one process, one thread)."""

    def __init__(self, cfg: FeaturesConfig) -> None:
        self.cfg = cfg
        self.frontend = FrontEnd(cfg)
        self.n_samples = clip_samples(cfg)

    def __call__(self, path: str | os.PathLike[str]) -> np.ndarray:
        if Path(path).suffix == ARRAY_SUFFIX:  # data.dataset: precomputed, features as given
            return load_array(path, feature_dim(self.cfg), f"features.kind={self.cfg.kind}")
        if self.cfg.beat_sync:  # beat tracking reads the whole waveform
            wave = self._pad(load_audio(path, self.cfg.sample_rate))
            with torch.no_grad():
                feats = self.frontend(wave[None])[0].numpy()  # (dim, frames)
            feats = beat_synchronise(feats, wave.numpy(), self.cfg)
            return np.ascontiguousarray(feats.T.astype(np.float16))  # (frames, dim)
        if self.cfg.mirror != "none":
            with torch.no_grad():
                feats = mirrored(self._half(path), self.frontend)  # (dim, frames)
            return np.ascontiguousarray(feats.numpy().T.astype(np.float16))
        # a long clip in pieces, never whole in memory (audiotag.features.stream)
        parts = [np.ascontiguousarray(f.numpy().T.astype(np.float16))  # (frames, dim)
                 for f in clip_frames(path, self.frontend, self._pad)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _pad(self, wave: torch.Tensor) -> torch.Tensor:
        return pad_to_length(wave, self.n_samples, self.cfg.pad_mode)

    def _half(self, path: str | os.PathLike[str]) -> torch.Tensor:
        """``features.mirror``: the clip's first ``ceil(samples / 2)`` samples (a shorter
        clip padded to them with ``pad_mode``), read no further."""
        half, pieces, got = (self.n_samples + 1) // 2, [], 0
        for piece in audio_blocks(path, self.cfg.sample_rate):
            pieces.append(piece)
            got += len(piece)
            if got >= half:
                break
        wave = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
        return pad_to_length(wave[:half], half, self.cfg.pad_mode)


def mirrored(half: torch.Tensor, frontend: FrontEnd) -> torch.Tensor:
    """``features.mirror``: features ``(dim, frames)`` of a clip of ``clip_seconds`` made
    of ``half`` (``(samples,)``, the first half) and its time reversal: with ``wave`` the
    front end's of ``half`` + reversed ``half``; with ``spectrogram`` ``half``'s features
    followed by the same frames reversed, cut to the window (:func:`n_frames`)."""
    cfg = frontend.cfg
    if cfg.mirror == "wave":
        wave = torch.cat([half, half.flip(-1)])[:clip_samples(cfg)]
        return frontend(wave[None])[0]
    feats = frontend(half[None])[0]  # (dim, frames of the half)
    return torch.cat([feats, feats.flip(-1)], dim=-1)[:, :n_frames(cfg)]


def check_finite(frames: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Raise :class:`AudioError` naming ``path`` if its features hold NaN or inf."""
    if not np.isfinite(frames).all():
        raise AudioError(f"{path}: features hold {int((~np.isfinite(frames)).sum())} "
                         "non-finite value(s) (NaN or inf samples in the audio?)")


def clip_windows(frames: np.ndarray, starts: list[int] | None, window: int,
                 shift: np.ndarray, scale: np.ndarray,
                 projection: np.ndarray | None = None) -> torch.Tensor:
    """Normalised model input ``(K, dim, window)`` float32 of a clip's stored frames
    ``(T, dim)``: the windows at ``starts`` (zero-padded if short), or with ``starts=None``
    the whole sequence ``(1, dim, T)`` (``beat_sync``); ``projection``: ``features.pca``'s
    (:func:`~audiotag.features.frames.normalised_windows`). Evaluation
    (:class:`FeatureSet`) and prediction on audio files (:class:`ClipPipeline`) both build
    inputs here."""
    return torch.from_numpy(normalised_windows(frames, starts, window, shift, scale,
                                               projection))


class ClipPipeline:
    """Audio file -> the evaluation input of a checkpoint: decode, downmix, resample, pad,
    features (:class:`ClipExtractor`, as the ``features`` stage stored them, float16),
    the evaluation windows (``features.eval_crops``) and the training normalisation.

    ``features`` is the FeaturesConfig dump and ``stats`` the ``stats.json`` of the store
    the model was trained on (a checkpoint holds both). Items match :class:`FeatureSet`'s:
    ``(dim, T)``, or ``(N, dim, T)`` with ``N > 1`` evaluation crops.
    """

    def __init__(self, features: dict, stats: dict) -> None:
        self.config = FeaturesConfig.saved(features)
        self.extract = ClipExtractor(self.config)
        self.window = n_frames(self.config)
        self.n_crops = self.config.n_eval_crops
        self.shift = np.asarray(stats["shift"], dtype=np.float32)  # (dim,)
        self.scale = np.asarray(stats["scale"], dtype=np.float32)
        self.projection = projection_of(stats)  # features.pca's (dim, n), or None

    def __call__(self, path: str | os.PathLike[str]) -> torch.Tensor:
        frames = self.extract(path)  # (T, dim) float16; AudioError if unreadable
        check_finite(frames, path)
        starts = (None if self.config.beat_sync
                  else eval_starts(frames.shape[0], self.window, self.n_crops))
        x = clip_windows(frames, starts, self.window, self.shift, self.scale, self.projection)
        return x[0] if self.n_crops == 1 or self.config.beat_sync else x


def beat_synchronise(feats: np.ndarray, wave: np.ndarray, cfg: FeaturesConfig) -> np.ndarray:
    """Mean of the frames between consecutive detected beats: ``(dim, beats + 1)``.

    Beats come from ``librosa.beat.beat_track`` on the same hop; a clip without detected
    beats becomes one segment (its mean frame).
    """
    import librosa  # only beat_sync needs it

    _, beats = librosa.beat.beat_track(y=wave, sr=cfg.sample_rate, hop_length=cfg.hop_length)
    beats = np.unique(np.clip(np.asarray(beats, dtype=int), 0, feats.shape[1]))
    return librosa.util.sync(feats, beats, aggregate=np.mean, pad=True)


_WORKER: ClipExtractor | None = None


def _start_method() -> str:
    """How the extraction workers start: from a clean single-threaded server where there is
    one (``forkserver``). A plain ``fork`` of a process with threads (tqdm's monitor,
    dvclive's, torch's) can copy a lock some thread holds; the child then never starts, and
    ``Pool.terminate`` after an error waited on it for ever (seen once in the test suite)."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


def _init_worker(cfg: FeaturesConfig) -> None:
    global _WORKER
    torch.set_num_threads(1)  # one clip per process; processes give the parallelism
    _WORKER = ClipExtractor(cfg)


def _extract_in_worker(path: str) -> np.ndarray:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(path)


# ---------------------------------------------------------------- statistics and storage


class _BandStats:
    """Streaming per-band count, sum, sum of squares, min and max (float64)."""

    def __init__(self, n_bands: int, products: bool = False) -> None:
        self.count = 0
        self.sum = np.zeros(n_bands)
        self.sumsq = np.zeros(n_bands)
        self.min = np.full(n_bands, np.inf)
        self.max = np.full(n_bands, -np.inf)
        self.clips = 0
        # sum of x x^T (bands, bands), for features.pca only
        self.products = np.zeros((n_bands, n_bands)) if products else None

    def update(self, frames: np.ndarray) -> None:  # (frames, bands) of one clip
        x = frames.astype(np.float64)
        self.count += x.shape[0]
        self.sum += x.sum(axis=0)
        self.sumsq += (x * x).sum(axis=0)
        self.min = np.minimum(self.min, x.min(axis=0))
        self.max = np.maximum(self.max, x.max(axis=0))
        self.clips += 1
        if self.products is not None:
            self.products += x.T @ x

    def result(self, cfg: FeaturesConfig, parts: list[dict]) -> dict:
        if self.count == 0:
            raise ValueError("no training clips: cannot fit normalisation statistics")
        with np.errstate(invalid="ignore", over="ignore"):  # checked for finiteness below
            mean = self.sum / self.count
            std = np.maximum(np.sqrt(np.maximum(self.sumsq / self.count - mean**2, 0.0)),
                             STD_FLOOR)
        if cfg.normalize_parts is None and cfg.normalize_by == "band":
            shift, scale = _shift_scale(cfg.normalize, mean, std, self.min, self.max)
        else:
            shift, scale = self._grouped(cfg, parts)
        named = {"mean": mean, "std": std, "min": self.min, "max": self.max, "shift": shift,
                 "scale": scale}
        extra = {}
        if cfg.pca:
            extra["projection"] = self._projection(cfg.pca, mean, scale)
            named["projection"] = np.asarray(extra["projection"]).ravel()
        if cfg.normalize_parts is not None or cfg.normalize_by != "band":
            extra.update(normalize_parts=cfg.normalize_parts, normalize_by=cfg.normalize_by)
        for name, values in named.items():  # NaN here would poison every clip downstream
            bad = np.flatnonzero(~np.isfinite(values))
            if len(bad):
                raise ValueError(
                    f"normalisation statistics are not finite: {name} of band "
                    f"{', '.join(map(str, bad[:5]))}{' ...' if len(bad) > 5 else ''} "
                    f"({len(bad)} of {len(values)} bands); nothing written")
        return {"normalize": cfg.normalize, "shift": shift.tolist(), "scale": scale.tolist(),
                "mean": mean.tolist(), "std": std.tolist(), "min": self.min.tolist(),
                "max": self.max.tolist(), "parts": parts, "n_clips": self.clips,
                "n_frames": self.count, "fitted_on": "train", **extra}

    def _grouped(self, cfg: FeaturesConfig, parts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """``shift``, ``scale`` per band with ``normalize_parts`` (a mode per part) and
        ``normalize_by`` (``part``/``all``: one mean, sd, min and max over the bands of a
        part, or of every band, broadcast to its bands)."""
        shift, scale = np.zeros(len(self.sum)), np.ones(len(self.sum))
        modes = cfg.normalize_parts or [cfg.normalize] * len(parts)
        for part, mode in zip(parts, modes, strict=True):
            a, b = part["start"], part["stop"]
            groups = ([(i, i + 1) for i in range(a, b)] if cfg.normalize_by == "band"
                      else [(a, b)] if cfg.normalize_by == "part" else [(0, len(self.sum))])
            for lo, hi in groups:
                n = self.count * (hi - lo)
                with np.errstate(invalid="ignore", over="ignore"):  # checked by result()
                    mean = self.sum[lo:hi].sum() / n
                    std = max(np.sqrt(max(self.sumsq[lo:hi].sum() / n - mean**2, 0.0)),
                              STD_FLOOR)
                s, c = _shift_scale(mode, mean, std, self.min[lo:hi].min(),
                                    self.max[lo:hi].max())
                lo, hi = max(lo, a), min(hi, b)  # "all": the whole's statistics, this part
                shift[lo:hi], scale[lo:hi] = s, c
        return shift, scale

    def _projection(self, n: int, mean: np.ndarray, scale: np.ndarray) -> list[list[float]]:
        """The ``(bands, n)`` matrix of the first ``n`` principal axes of the normalised
        training frames (their covariance's eigenvectors, largest eigenvalue first, each
        signed so that its largest entry is positive)."""
        assert self.products is not None
        cov = (self.products / self.count - np.outer(mean, mean)) / np.outer(scale, scale)
        values, vectors = np.linalg.eigh(cov)  # ascending
        vectors = vectors[:, np.argsort(-values, kind="stable")[:n]]
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(n)])
        return (vectors * signs).tolist()


def _shift_scale(mode: str, mean, std, low, high) -> tuple:
    """``normalize`` mode -> (shift, scale) from a band's (or a group's) statistics."""
    if mode == "standard":
        return mean, std
    if mode == "minmax":  # -> [0, 1] on the training clips
        return low, np.maximum(high - low, STD_FLOOR)
    return np.zeros_like(mean), np.ones_like(mean)


def _npy_header(shape: tuple[int, ...]) -> bytes:
    """A version-1.0 ``.npy`` header for float16 C-order ``shape``, padded to HEADER_BYTES."""
    text = f"{{'descr': '<f2', 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    size = HEADER_BYTES - 10  # magic (6) + version (2) + length (2)
    if len(text) >= size:
        raise ValueError(f"shape {shape} does not fit the .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", size) + (text.ljust(size - 1) + "\n").encode()


class _FrameWriter:
    """Appends ``(frames, dim)`` blocks to a ``.npy`` file without holding them in memory."""

    def __init__(self, path: Path, dim: int) -> None:
        self.path, self.dim, self.rows = path, dim, 0
        self.file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.file.write(b"\0" * HEADER_BYTES)

    def append(self, frames: np.ndarray) -> int:
        offset = self.rows
        self.file.write(frames.tobytes())
        self.rows += frames.shape[0]
        return offset

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(_npy_header((self.rows, self.dim)))
        self.file.close()


def _results(paths: list[Path], cfg: FeaturesConfig, pool):
    """Features of ``paths`` in order, from the worker pool (or in-process without one)."""
    if pool is None:
        return _in_process(paths, cfg)
    chunk = max(1, min(cfg.batch_size, math.ceil(len(paths) / (4 * cfg.workers))))
    return pool.imap(_extract_in_worker, [str(p) for p in paths], chunksize=chunk)


def _in_process(paths: list[Path], cfg: FeaturesConfig):
    """One thread, as in a worker: per-clip ops are too small for torch's thread pool,
    which only adds contention (10x slower on a busy 2-core machine)."""
    extractor, threads = ClipExtractor(cfg), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for path in paths:
            yield extractor(path)
    finally:
        torch.set_num_threads(threads)


def _extract_subset(paths: list[Path], train_mask: np.ndarray, writer: _FrameWriter,
                    stats: _BandStats, cfg: FeaturesConfig, pool,
                    desc: str) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(paths), dtype=np.int64)
    lengths = np.zeros(len(paths), dtype=np.int64)
    results = _results(paths, cfg, pool)
    for i, frames in enumerate(tqdm(results, total=len(paths), desc=desc, unit="clip",
                                    disable=None)):
        check_finite(frames, paths[i])  # screening excludes such clips; never trust it
        offsets[i] = writer.append(frames)
        lengths[i] = frames.shape[0]
        if train_mask[i]:
            stats.update(frames)
    return offsets, lengths


def extract_features(manifest: pd.DataFrame, classes: list[str], manifest_dir: Path,
                     out_dir: str | os.PathLike[str], cfg: FeaturesConfig,
                     split: SplitConfig) -> None:
    """Compute ``cfg.kind`` features of every clip into a new store at ``out_dir`` (atomic).

    ``cfg.workers`` processes extract clips in parallel; the parent streams their frames
    to disk in manifest order, so memory does not grow with the number of clips (beyond
    the index) and the store is identical for any number of workers.
    """
    index = manifest.copy()
    index["role"] = assign_roles(index, split)
    index["row"] = index.groupby("subset").cumcount()
    index["offset"] = 0
    index["length"] = 0
    paths = audio_paths(index, manifest_dir)
    dim, parts = feature_dim(cfg), feature_parts(cfg)
    stats = _BandStats(dim, products=cfg.pca > 0)
    pool = None
    if cfg.workers > 0:
        pool = multiprocessing.get_context(_start_method()).Pool(cfg.workers, _init_worker,
                                                                 (cfg,))
    try:
        with atomic_dir(out_dir) as tmp:
            for subset in SUBSETS:
                sel = np.flatnonzero(index["subset"].to_numpy() == subset)
                writer = _FrameWriter(tmp / f"{subset}.npy", dim)
                try:
                    if len(sel):
                        offsets, lengths = _extract_subset(
                            [paths[i] for i in sel], index["role"].to_numpy()[sel] == "train",
                            writer, stats, cfg, pool, desc=f"features {subset}")
                        index.loc[index.index[sel], "offset"] = offsets
                        index.loc[index.index[sel], "length"] = lengths
                finally:
                    writer.close()
                log.info("%s: %d clips, %d frames of dim %d", subset, len(sel), writer.rows, dim)
            _write_tables(tmp, index, classes, stats.result(cfg, parts), cfg)
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()


def _write_tables(tmp: Path, index: pd.DataFrame, classes: list[str], stats: dict,
                  cfg: FeaturesConfig) -> None:
    index[index_columns(list(index.columns))].to_csv(tmp / INDEX_NAME, index=False)
    write_text(tmp / CLASSES_NAME, "\n".join(classes) + "\n")
    write_json(tmp / STATS_NAME, stats)
    dim = cfg.pca or feature_dim(cfg)  # the model's input bands
    write_json(tmp / FEATURES_NAME, {
        "config": cfg.dump(), "kind": cfg.kind, "dim": dim, "n_mels": dim,
        "parts": feature_parts(cfg), "frames": n_frames(cfg),  # crop window (frames)
        "variable_length": cfg.beat_sync})


# ---------------------------------------------------------------- reading

LABELS_COLUMNS = ["clip_id", "labels", "weight"]
"""Columns of a labels file (label cleaning's ``data/clean/labels.csv``)."""


def read_labels(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A labels file (label cleaning's ``data/clean/labels.csv``) as a table; its path is
    kept in ``attrs["source"]``, which :func:`relabel_index` names in its errors."""
    table = read_clip_table(path)
    table.attrs["source"] = str(path)
    return table


def relabel_index(index: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``index`` that the ``labels`` table (``clip_id, labels, weight``: a file
    read by :func:`read_labels`, or a k-fold CV fold's clips) lists, in ``index`` order,
    with its ``labels`` and ``weight``: the table lists the clips to train on (a clip it
    leaves out, e.g. one label cleaning dropped, does not train). A listed clip missing
    from ``index``, a clip listed twice or a weight that is not a finite number >= 0 is an
    error naming the file (or "labels table") and row."""
    from_file = "source" in labels.attrs
    path = labels.attrs.get("source", "labels table")
    table = labels.reset_index(drop=True)
    missing = [c for c in LABELS_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r} (a labels file has "
                         f"{', '.join(LABELS_COLUMNS)})")
    weight = pd.to_numeric(table["weight"], errors="coerce").to_numpy(dtype=np.float64)
    known = set(index["clip_id"])
    seen: set[str] = set()
    for row, (clip, w) in enumerate(zip(table["clip_id"], weight, strict=True), start=2):
        if clip not in known:
            raise ValueError(f"{path}: row {row}: clip {clip!r} is not one of the feature "
                             "store's clips of this role (a labels file of another store?)")
        if clip in seen:
            raise ValueError(f"{path}: row {row}: clip {clip!r} is listed twice")
        if not (np.isfinite(w) and w >= 0):
            raise ValueError(f"{path}: row {row}: weight {table['weight'].iloc[row - 2]!r} "
                             "is not a number >= 0")
        seen.add(clip)
    by_id = table.assign(weight=weight).set_index("clip_id")
    out = index[index["clip_id"].isin(seen)].reset_index(drop=True)
    out["labels"] = by_id.loc[out["clip_id"], "labels"].to_numpy()
    out["weight"] = by_id.loc[out["clip_id"], "weight"].to_numpy()
    dropped = len(index) - len(out)
    if dropped and from_file:  # a table lists a subset on purpose (a k-fold CV fold)
        log.info("%s: %d of %d clips not listed (dropped by label cleaning)", path, dropped,
                 len(index))
    return out


class FeatureSet(torch.utils.data.Dataset):
    """Cropped, normalised features, multi-hot targets and loss weights of the clips with
    given roles; one item per clip.

    Items are :class:`Item` s: y ``(n_classes,)`` float32 (``outputs``: see
    :meth:`with_outputs` for regression targets), w a float32 scalar (the manifest's
    ``weight`` column, written by label cleaning, 1 without it; with ``noisy_weight``, times
    that for the clips of the noisy subset), noisy 1.0 for a clip of the noisy subset (else
    0.0) and x float32:

    - evaluation (``train=False``, the default, deterministic): the centre window
      ``(dim, frames)``, or with ``features.eval_crops: N > 1`` N evenly spaced windows
      ``(N, dim, frames)``, whose predictions are averaged per clip;
    - training (``train=True``): a random window (``features.train_crop``), or with
      ``features.crops_per_clip: K > 1`` K of them ``(K, dim, frames)``; the clip's
      crops share its label and its loss weight.

    With ``beat_sync`` nothing is cropped: x is the whole ``(dim, beats + 1)`` sequence
    (pad batches with :func:`collate_clips`, which adds their lengths). Arrays stay memory-mapped
    (:class:`~audiotag.features.frames.MappedFrames`: read pages do not pile up).
    """

    def __init__(self, store_dir: str | os.PathLike[str], roles: tuple[str, ...], *,
                 train: bool = False, crops: int | None = None,
                 labels: pd.DataFrame | None = None,
                 outputs: tuple[bool, list[str]] | None = None,
                 noisy_weight: float = 1.0) -> None:
        store = Path(store_dir)
        self.index = read_store_index(store, roles)
        if labels is not None:  # label cleaning's labels and weights (see relabel_index)
            self.index = relabel_index(self.index, labels)
        self.classes = read_classes(store / CLASSES_NAME)
        self.stats = read_json(store / STATS_NAME)
        self.meta = read_json(store / FEATURES_NAME)
        self.config = FeaturesConfig.saved(self.meta["config"])
        self.shift = np.asarray(self.stats["shift"], dtype=np.float32)  # (dim,)
        self.scale = np.asarray(self.stats["scale"], dtype=np.float32)
        self.projection = projection_of(self.stats)  # features.pca's (dim, n), or None
        self.targets = labels_to_matrix(self.index["labels"], self.classes)  # (N, C)
        self._y = self.targets  # y of the items; see with_outputs
        if outputs is not None:
            self._y = self._outputs(*outputs)
        self._noisy = (self.index["subset"] == "noisy").to_numpy(dtype=np.float32)
        weights = (self.index["weight"].to_numpy(dtype=np.float32) if "weight" in self.index
                   else np.ones(len(self.index), dtype=np.float32))  # (N,)
        if noisy_weight != 1.0:  # train.noisy_weight, times label cleaning's weights
            weights = weights * np.where(self._noisy > 0, np.float32(noisy_weight),
                                         np.float32(1.0))
        self.loss_weights = weights  # (N,) per clip (not the network's weights)
        self.train = train
        default = self.config.crops_per_clip if train else self.config.n_eval_crops
        self.n_crops = default if crops is None else crops  # >1: items are (n_crops, dim, T)
        self.window = int(self.meta["frames"])
        self._frames = MappedFrames(store)
        self._subset = self.index["subset"].to_numpy()
        self._offset = self.index["offset"].to_numpy()
        self._length = self.index["length"].to_numpy()

    @property
    def target_columns(self) -> list[str]:
        """The index's regression target columns (``targets_*``), in column order."""
        return [c for c in self.index.columns if c.startswith(TARGET_PREFIX)]

    def with_outputs(self, with_classes: bool, columns: list[str]) -> FeatureSet:
        """The same clips with items' ``y`` the class targets (if ``with_classes``) followed
        by the regression ``columns`` (``targets_*``; NaN where unknown): the layout of
        :mod:`audiotag.training.tasks`. By default ``y`` is the class targets only."""
        other = copy.copy(self)
        other._y = self._outputs(with_classes, columns)
        return other

    def _outputs(self, with_classes: bool, columns: list[str]) -> np.ndarray:
        missing = [c for c in columns if c not in self.index]
        if missing:
            raise ValueError(f"feature store index has no column {missing[0]!r} "
                             f"(regression targets come from the manifest's targets_* columns)")
        parts = [self.targets] if with_classes else []
        if columns:
            values = self.index[columns].apply(pd.to_numeric, errors="coerce")
            parts.append(values.to_numpy(dtype=np.float32))  # NaN = unknown target
        if not parts:
            raise ValueError("a FeatureSet needs class targets or regression columns")
        return np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)

    @property
    def is_noisy(self) -> np.ndarray:
        """``(N,)`` 1.0 for clips of the noisy subset, else 0.0."""
        return self._noisy

    @property
    def dim(self) -> int:
        """Feature dimension (bands): n_mels for logmel, 1 for waveform, ..."""
        return int(self.meta["dim"])

    @property
    def kind(self) -> str:
        return self.config.kind

    def __len__(self) -> int:
        return len(self.index)

    @property
    def clip_ids(self) -> list[str]:
        return self.index["clip_id"].tolist()

    def _starts(self, length: int, generator: torch.Generator | None = None) -> list[int]:
        if self.train and self.config.train_crop == "random":
            return [random_start(length, self.window, generator) for _ in range(self.n_crops)]
        if self.train:
            return [center_start(length, self.window)] * self.n_crops
        return eval_starts(length, self.window, self.n_crops)

    def __getitem__(self, key: int | SeededIndex) -> Item:
        """Item ``key``: an index (random crops from torch's global RNG), or a
        :class:`~audiotag.features.crops.SeededIndex` (from
        :class:`~audiotag.features.crops.CropSeedSampler`: random crops from its seed)."""
        i, seed = (key.index, key.seed) if isinstance(key, SeededIndex) else (key, None)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        start, length = int(self._offset[i]), int(self._length[i])
        frames = self._frames.read(self._subset[i], start, length)  # (T, dim) float16
        starts = None if self.config.beat_sync else self._starts(length, generator)
        x = clip_windows(frames, starts, self.window, self.shift, self.scale,
                         self.projection)  # (K, dim, T)
        if self.n_crops == 1 or self.config.beat_sync:
            x = x[0]
        return Item(x, torch.from_numpy(self._y[i]), torch.tensor(self.loss_weights[i]),
                    torch.tensor(self._noisy[i]))


class Item(NamedTuple):
    """One clip as a dataset gives it: ``x`` its window(s) ``(dim, T)`` or ``(K, dim, T)``,
    ``y`` its targets ``(outputs,)``, ``w`` its loss weight (scalar), ``noisy`` 1.0 for a
    clip of the noisy subset (None: the source knows no subsets, e.g. audio files)."""

    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor
    noisy: torch.Tensor | None = None


@dataclass(frozen=True)
class Batch:
    """A batch of clips, as :func:`collate_clips` builds it.

    ``x`` ``(B, dim, T)``, or ``(B, K, dim, T)`` for K crops per clip; ``y`` ``(B, outputs)``
    targets; ``w`` ``(B,)`` loss weights; ``noisy`` ``(B,)`` 1.0 for noisy-subset clips
    (None: the items carry no such flag); ``lengths`` ``(B,)`` int64 valid frames of
    zero-padded variable-length items (None: all items have the same length).
    """

    x: torch.Tensor
    y: torch.Tensor
    w: torch.Tensor
    noisy: torch.Tensor | None = None
    lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def windows(self) -> torch.Tensor:
        """Every window of the batch as one model input: ``(B * K, dim, T)`` (K crops per
        clip), or ``x`` itself when each clip is one window."""
        return self.x.flatten(0, 1) if self.x.dim() == 4 else self.x

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device``, ``noisy`` zeros where the items had no flag."""
        noisy = self.noisy if self.noisy is not None else torch.zeros_like(self.w)
        # non_blocking: from pinned memory (train.pin_memory) the copy to a GPU overlaps work
        return Batch(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True),
                     self.w.to(device), noisy.to(device),
                     self.lengths.to(device) if self.lengths is not None else None)

    def pin_memory(self) -> Batch:
        """Page-locked copies (``DataLoader(pin_memory=True)`` calls this)."""
        def pin(t: torch.Tensor | None) -> torch.Tensor | None:
            return t.pin_memory() if t is not None else None
        return Batch(pin(self.x), pin(self.y), pin(self.w), pin(self.noisy), pin(self.lengths))


def collate_clips(batch: list[Item]) -> Batch:
    """Stack :class:`Item` s into a :class:`Batch`. Sequences of different
    lengths (``beat_sync``) are zero-padded at the end to the longest and the batch gets
    their ``lengths``, which the training loop passes to models that declare
    ``accepts_lengths``; other models pool over padded frames too (after ``standard``
    normalisation 0 is the training mean)."""
    xs = [item.x for item in batch]
    longest = max(x.shape[-1] for x in xs)
    y, w = torch.stack([item.y for item in batch]), torch.stack([item.w for item in batch])
    flags = [item.noisy for item in batch]
    noisy = torch.stack(flags) if all(f is not None for f in flags) else None
    lengths = None
    if any(x.shape[-1] != longest for x in xs):
        lengths = torch.tensor([x.shape[-1] for x in xs], dtype=torch.int64)
        xs = [torch.nn.functional.pad(x, (0, longest - x.shape[-1])) for x in xs]
    return Batch(torch.stack(xs), y, w, noisy, lengths)
