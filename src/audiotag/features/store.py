"""The feature store: what the ``features`` stage writes and training reads.

Layout of a store directory::

    <subset>.npy    float16 log-mel, (clips, n_mels, frames), one per subset, memory-mapped
    index.csv       clip_id, subset, row (in <subset>.npy), role, fold, labels
                    [, true_labels, weight, targets_*] (optional manifest columns kept)
    classes.txt     class order of every label matrix
    stats.json      per-band mean/std, fitted on the clips whose role is ``train`` only
    features.json   the FeaturesConfig that made it, and the array shape

Features are stored un-normalised; :class:`FeatureSet` applies ``stats.json`` on read, so
validation and test are transformed with training statistics.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from audiotag.core.config import FeaturesConfig, SplitConfig
from audiotag.core.io import atomic_dir, read_json, write_json, write_text
from audiotag.data.manifest import (
    CLASSES_NAME,
    SUBSETS,
    TARGET_PREFIX,
    audio_paths,
    labels_to_matrix,
    read_classes,
)
from audiotag.data.split import assign_roles
from audiotag.features.audio import fit_length, load_audio
from audiotag.features.logmel import LogMel, clip_samples, n_frames

log = logging.getLogger(__name__)
STD_FLOOR = 1e-5  # a constant band (e.g. above fmax of resampled audio) must not divide by 0


class _BandStats:
    """Streaming per-band mean/std over every frame of the clips it sees (float64)."""

    def __init__(self, n_bands: int) -> None:
        self.count = 0
        self.sum = np.zeros(n_bands)
        self.sumsq = np.zeros(n_bands)
        self.clips = 0

    def update(self, feats: np.ndarray) -> None:  # (B, n_mels, frames)
        x = feats.astype(np.float64)
        self.count += x.shape[0] * x.shape[2]
        self.sum += x.sum(axis=(0, 2))
        self.sumsq += (x * x).sum(axis=(0, 2))
        self.clips += x.shape[0]

    def result(self) -> dict:
        if self.count == 0:
            raise ValueError("no training clips: cannot fit normalisation statistics")
        mean = self.sum / self.count
        std = np.sqrt(np.maximum(self.sumsq / self.count - mean**2, 0.0))
        return {"mean": mean.tolist(), "std": np.maximum(std, STD_FLOOR).tolist(),
                "n_clips": self.clips, "fitted_on": "train"}


def _extract_subset(paths: list[Path], train_mask: np.ndarray, out: np.ndarray,
                    cfg: FeaturesConfig, stats: _BandStats, desc: str) -> None:
    frontend = LogMel(cfg)
    n_samples = clip_samples(cfg)

    def load(path: Path) -> torch.Tensor:
        return fit_length(load_audio(path, cfg.sample_rate), n_samples, cfg.pad_mode)

    with ThreadPoolExecutor(max_workers=2) as pool, \
            tqdm(total=len(paths), desc=desc, unit="clip", disable=None) as bar:
        for start in range(0, len(paths), cfg.batch_size):
            batch_paths = paths[start:start + cfg.batch_size]
            waves = torch.stack(list(pool.map(load, batch_paths)))  # (B, samples)
            with torch.no_grad():
                feats = frontend(waves).numpy()  # (B, n_mels, frames)
            out[start:start + len(batch_paths)] = feats.astype(np.float16)
            mask = train_mask[start:start + len(batch_paths)]
            if mask.any():
                stats.update(feats[mask])
            bar.update(len(batch_paths))


def extract_features(manifest: pd.DataFrame, classes: list[str], manifest_dir: Path,
                     out_dir: str | os.PathLike[str], cfg: FeaturesConfig,
                     split: SplitConfig) -> None:
    """Compute log-mel features of every clip into a new store at ``out_dir`` (atomic)."""
    index = manifest.copy()
    index["role"] = assign_roles(index, split)
    index["row"] = index.groupby("subset").cumcount()
    paths = audio_paths(index, manifest_dir)
    frames = n_frames(cfg)
    stats = _BandStats(cfg.n_mels)
    with atomic_dir(out_dir) as tmp:
        for subset in SUBSETS:
            sel = np.flatnonzero(index["subset"].to_numpy() == subset)
            shape = (len(sel), cfg.n_mels, frames)
            array = np.lib.format.open_memmap(tmp / f"{subset}.npy", mode="w+",
                                              dtype=np.float16, shape=shape)
            if len(sel):
                _extract_subset([paths[i] for i in sel],
                                index["role"].to_numpy()[sel] == "train", array, cfg, stats,
                                desc=f"features {subset}")
            array.flush()
            del array
            log.info("%s: %d clips -> %s", subset, len(sel), shape)
        keep = ["clip_id", "subset", "row", "role", "fold", "labels"]
        keep += [c for c in index.columns
                 if c in ("true_labels", "weight") or str(c).startswith(TARGET_PREFIX)]
        index[keep].to_csv(tmp / "index.csv", index=False)
        write_text(tmp / CLASSES_NAME, "\n".join(classes) + "\n")
        write_json(tmp / "stats.json", stats.result())
        write_json(tmp / "features.json", {"config": cfg.model_dump(),
                                           "n_mels": cfg.n_mels, "frames": frames})


class FeatureSet(torch.utils.data.Dataset):
    """Normalised features, multi-hot targets and loss weights of the clips with given roles.

    Items are ``(x, y, w)``: x ``(n_mels, frames)`` float32, y ``(n_classes,)`` float32 and
    w a float32 scalar, the clip's training-loss weight (the manifest's ``weight`` column,
    written by label cleaning; 1 without it). Arrays stay memory-mapped; only the rows
    asked for are read.
    """

    def __init__(self, store_dir: str | os.PathLike[str], roles: tuple[str, ...]) -> None:
        store = Path(store_dir)
        index = pd.read_csv(store / "index.csv", dtype={"clip_id": str, "labels": str},
                            keep_default_na=False)
        self.index = index[index["role"].isin(roles)].reset_index(drop=True)
        self.classes = read_classes(store / CLASSES_NAME)
        stats = read_json(store / "stats.json")
        self.mean = np.asarray(stats["mean"], dtype=np.float32)[:, None]  # (n_mels, 1)
        self.std = np.asarray(stats["std"], dtype=np.float32)[:, None]
        self.stats = stats
        self.meta = read_json(store / "features.json")
        self.targets = labels_to_matrix(self.index["labels"], self.classes)  # (N, C)
        weights = (self.index["weight"].to_numpy(dtype=np.float32) if "weight" in self.index
                   else np.ones(len(self.index), dtype=np.float32))
        self.weights = weights  # (N,)
        self._arrays = {s: np.load(store / f"{s}.npy", mmap_mode="r") for s in SUBSETS}
        self._subset = self.index["subset"].to_numpy()
        self._row = self.index["row"].to_numpy()

    @property
    def n_mels(self) -> int:
        return int(self.meta["n_mels"])

    def __len__(self) -> int:
        return len(self.index)

    @property
    def clip_ids(self) -> list[str]:
        return self.index["clip_id"].tolist()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raw = self._arrays[self._subset[i]][self._row[i]].astype(np.float32)
        x = (raw - self.mean) / self.std
        return (torch.from_numpy(x), torch.from_numpy(self.targets[i]),
                torch.tensor(self.weights[i]))
