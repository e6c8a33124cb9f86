"""Label statistics, reported by every ``clean.method`` (``none`` reports only these)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from audiotag.data.manifest import SUBSETS, split_labels


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
