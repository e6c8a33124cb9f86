"""Dataset exploration, made by every run (stage ``explore``): what the notebooks looked at
before training.

- ``class_counts.csv`` + ``class_histogram.png``: clips per class in each subset (rare
  classes: see ``data.min_clips_per_class`` and ``data.merge_classes``);
- ``durations.png`` and the ``duration_s`` statistics (min, median, mean, max) per subset
  in the metrics JSON (the English log chose ``features.clip_seconds`` by the median);
- ``examples.png``: a few clips per class as the models see them (the feature store's
  normalised ``features.kind`` image: log-mel, MFCC, chroma, ...);
- ``frames_per_clip`` in the metrics JSON: the time steps a model sees per clip (the crop
  of ``features.clip_seconds``), the seconds per step, and the steps stored per clip in
  each subset (min, median, max): the Greek notebook's 1,293 mel frames against 62 or 87
  beat-synchronous ones.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from audiotag.core.io import atomic_path, write_json
from audiotag.data.manifest import read_manifest, split_labels
from audiotag.features.frames import StoredClips
from audiotag.plots import save_figure

log = logging.getLogger(__name__)
SUBSETS = ("curated", "noisy", "test")


def class_counts(manifest: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """One row per class: ``class``, the clips carrying it in each subset present
    (``curated``, ``noisy``, ``test``) and ``total``."""
    labels = manifest["labels"].map(split_labels)
    table = pd.DataFrame({"class": classes})
    for subset in [s for s in SUBSETS if (manifest["subset"] == s).any()]:
        mask = (manifest["subset"] == subset).to_numpy()
        counts = labels[mask].explode().value_counts()
        table[subset] = [int(counts.get(c, 0)) for c in classes]
    table["total"] = table.drop(columns="class").sum(axis=1)
    return table


def duration_stats(manifest: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per subset: min, median, mean and max of ``duration_s`` (seconds)."""
    out = {}
    for subset, durations in manifest.groupby("subset")["duration_s"]:
        d = durations.astype(float)
        out[str(subset)] = {"min": round(float(d.min()), 3),
                            "median": round(float(d.median()), 3),
                            "mean": round(float(d.mean()), 3),
                            "max": round(float(d.max()), 3)}
    return out


def frame_stats(store: StoredClips) -> dict[str, Any]:
    """``{"model_input", "frame_seconds", "stored": {subset: {min, median, max}}}``: the
    frames of one model input (None: variable length), the hop in seconds (None:
    beat-synchronous frames, whose length varies) and the frames stored per clip."""
    cfg = store.config
    stored = {}
    for subset, lengths in store.index.groupby("subset")["length"]:
        n = lengths.astype(int)
        stored[str(subset)] = {"min": int(n.min()), "median": float(n.median()),
                               "max": int(n.max())}
    variable = store.meta.get("variable_length") or not store.meta.get("frames")
    return {"model_input": None if variable else int(store.meta["frames"]),
            "frame_seconds": None if cfg.beat_sync else round(cfg.hop_length / cfg.sample_rate,
                                                              6),
            "stored": stored}


def _plot_histogram(counts: pd.DataFrame, classes: list[str], path: Path) -> None:
    table = counts.set_index("class").drop(columns="total")
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.22 * len(classes)))
    table[::-1].plot.barh(ax=ax, width=0.8)
    ax.set_xlabel("clips with the class")
    ax.set_title("clips per class and subset")
    save_figure(fig, path)


def _plot_durations(manifest: pd.DataFrame, stats: dict, path: Path) -> None:
    subsets = [s for s in SUBSETS if s in stats]
    fig, axes = plt.subplots(1, len(subsets), figsize=(4 * len(subsets), 3), squeeze=False)
    for ax, subset in zip(axes[0], subsets, strict=True):
        d = manifest.loc[manifest["subset"] == subset, "duration_s"].astype(float)
        ax.hist(d, bins=30, color="tab:blue")
        ax.axvline(stats[subset]["median"], color="tab:red",
                   label=f"median {stats[subset]['median']:.2f} s")
        ax.set_title(f"{subset}: {len(d)} clips")
        ax.set_xlabel("duration (s)")
        ax.legend()
    save_figure(fig, path)


def _plot_examples(store: StoredClips, per_class: int, path: Path) -> None:
    """``per_class`` clips of each class (curated before noisy, single-label before
    multi-label; training clips, in index order) as their stored feature images."""
    labels = store.index["labels"].map(split_labels)
    subsets = store.index["subset"].tolist()
    n = len(store.classes)
    fig, axes = plt.subplots(n, per_class, figsize=(2.6 * per_class + 1.6, 1.5 * n + 0.8),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    image = None
    for row, name in enumerate(store.classes):
        having = [i for i, ls in enumerate(labels) if name in ls]
        # stable: curated before noisy (whose labels may be wrong), single-label first
        having.sort(key=lambda i: (subsets[i] == "noisy", len(labels[i]) > 1))
        for col in range(per_class):
            ax = axes[row][col]
            ax.tick_params(labelsize=6)
            if col == 0:
                ax.set_ylabel(f"{name}\nband", fontsize=7)
            if row == n - 1:
                ax.set_xlabel("frame (time)", fontsize=7)
            if col >= len(having):
                ax.set_axis_off()
                continue
            x = store.eval_input(having[col])  # (dim, frames), or (crops, dim, frames)
            image = ax.imshow(x[0] if x.ndim == 3 else x, origin="lower", aspect="auto",
                              cmap="magma", vmin=-3, vmax=3)
            ax.set_title(store.index["clip_id"].iloc[having[col]], fontsize=6)
    if image is not None:  # one scale for every panel: features normalised to mean 0, sd 1
        fig.colorbar(image, ax=axes, shrink=0.5).set_label("normalised value (sd)", fontsize=7)
    fig.suptitle(f"examples per class: {store.kind} features (normalised on the training "
                 "clips; rows: feature bands, low first)")
    save_figure(fig, path)


def explore_dataset(manifest_dir: str | os.PathLike[str], features_dir: str | os.PathLike[str],
                    metrics_path: str | os.PathLike[str], plots_dir: str | os.PathLike[str],
                    examples_per_class: int = 3) -> dict[str, Any]:
    """Write the exploration of the manifest in ``manifest_dir`` and the feature store in
    ``features_dir``: the metrics JSON (clips per subset, classes, duration statistics) and
    the plots of the module docstring into ``plots_dir``. Returns the metrics."""
    manifest, classes = read_manifest(manifest_dir)
    plots = Path(plots_dir)
    plots.mkdir(parents=True, exist_ok=True)
    counts = class_counts(manifest, classes)
    with atomic_path(plots / "class_counts.csv") as tmp:
        counts.to_csv(tmp, index=False)
    stats = duration_stats(manifest)
    _plot_histogram(counts, classes, plots / "class_histogram.png")
    _plot_durations(manifest, stats, plots / "durations.png")
    store = StoredClips(features_dir, ("train",))
    if len(store) == 0:  # no training clips (odd split params): show what there is
        store = StoredClips(features_dir, ("train", "valid", "test"))
    _plot_examples(store, examples_per_class, plots / "examples.png")
    per_class = counts["total"]
    every = StoredClips(features_dir, ("train", "valid", "test"))
    summary = {"clips": {s: int((manifest["subset"] == s).sum()) for s in SUBSETS
                         if (manifest["subset"] == s).any()},
               "classes": len(classes),
               "min_clips_per_class": int(per_class.min()) if len(per_class) else 0,
               "duration_s": stats,
               "frames_per_clip": frame_stats(every)}
    write_json(metrics_path, summary)
    log.info("%d clips, %d classes; median duration %s; frames per model input %s",
             len(manifest), len(classes),
             ", ".join(f"{s} {v['median']:.2f} s" for s, v in stats.items()),
             summary["frames_per_clip"]["model_input"])
    return summary
