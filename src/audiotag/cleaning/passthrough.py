"""``clean.method: none``: keep every label, report label statistics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from audiotag.core.io import atomic_dir, write_json
from audiotag.data.manifest import SUBSETS, rebase_paths, split_labels, write_manifest

ISSUE_COLUMNS = ["clip_id", "subset", "labels", "suggested_labels", "score"]


def label_stats(manifest: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """Clips per class in each subset: columns ``class, curated, noisy, test``."""
    counts = {s: dict.fromkeys(classes, 0) for s in SUBSETS}
    for labels, subset in zip(manifest["labels"], manifest["subset"], strict=True):
        for name in split_labels(labels):
            counts[subset][name] += 1
    return pd.DataFrame({"class": classes, **{s: [counts[s][c] for c in classes]
                                              for s in SUBSETS}})


def label_metrics(manifest: pd.DataFrame) -> dict[str, Any]:
    """Clip counts per subset; the measured noise rate when true labels are known."""
    out: dict[str, Any] = {"clips": {s: int((manifest["subset"] == s).sum()) for s in SUBSETS}}
    noisy = manifest[manifest["subset"] == "noisy"]
    if "true_labels" in manifest.columns and len(noisy):
        differs = [set(split_labels(a)) != set(split_labels(b))
                   for a, b in zip(noisy["labels"], noisy["true_labels"], strict=True)]
        out["measured_noise_rate"] = round(sum(differs) / len(noisy), 6)
    return out


def clean_passthrough(manifest: pd.DataFrame, classes: list[str], raw_dir: Path,
                      out_dir: str | os.PathLike[str],
                      metrics_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the (unchanged) manifest, an empty label_issues.csv and label_stats.csv."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        # paths are relative to the manifest's directory: re-point them from out_dir
        write_manifest(rebase_paths(manifest, raw_dir, out_dir), classes, tmp)
        pd.DataFrame(columns=ISSUE_COLUMNS).to_csv(tmp / "label_issues.csv", index=False)
        label_stats(manifest, classes).to_csv(tmp / "label_stats.csv", index=False)
    metrics = label_metrics(manifest)
    metrics["flagged"] = 0
    write_json(metrics_path, metrics)
    return metrics
