"""The cross-model report: one markdown table and one comparison plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from audiotag.core.io import read_json, write_text
from audiotag.plots import save_figure

# (column title, getter over the per-model record, format)
COLUMNS = [
    ("test lwlrap", lambda r: r["eval"]["lwlrap"], "{:.4f}"),
    ("best valid lwlrap", lambda r: r["eval"]["valid_lwlrap"], "{:.4f}"),
    ("best epoch", lambda r: r["eval"]["best_epoch"], "{}"),
    ("epochs run", lambda r: r["train"].get("epochs_run"), "{}"),
    ("parameters", lambda r: r["eval"]["n_parameters"], "{:,}"),
    ("train s", lambda r: r["train"].get("train_seconds"), "{:.0f}"),
    ("grad ratio first/last", lambda r: r["weights"]["summary"].get("grad_ratio_first_last"),
     "{:.3g}"),
]


def collect(models: list[str], metrics_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Every model's evaluation, training summary and weight summary, read from metrics/."""
    root = Path(metrics_dir)
    records = {}
    for name in models:
        paths = {"eval": root / f"{name}.json", "train": root / "train" / name / "metrics.json",
                 "weights": root / "weights" / f"{name}.json"}
        missing = [str(p) for p in paths.values() if not p.exists()]
        if missing:
            raise FileNotFoundError(f"report: missing metrics for model {name!r}: {missing[0]}")
        records[name] = {key: read_json(path) for key, path in paths.items()}
    return records


def _cell(record: dict, getter, fmt: str) -> str:
    try:
        value = getter(record)
    except KeyError:
        return "–"
    return "–" if value is None else fmt.format(value)


def markdown_table(records: dict[str, dict[str, Any]]) -> str:
    """Models as rows; the best test lwlrap in bold."""
    best = max(records, key=lambda m: records[m]["eval"]["lwlrap"])
    lines = ["| model | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for name, record in records.items():
        cells = [_cell(record, getter, fmt) for _, getter, fmt in COLUMNS]
        if name == best:
            cells[0] = f"**{cells[0]}**"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_leaderboard(records: dict[str, dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Grouped bars: test and best-validation lwlrap per model."""
    names = list(records)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.5, 3.6))
    for offset, key, label in ((-0.2, "lwlrap", "test"), (0.2, "valid_lwlrap", "best valid")):
        values = [records[n]["eval"][key] for n in names]
        bars = ax.bar(x + offset, values, width=0.4, label=label)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("lwlrap")
    ax.set_title("Models compared (lwlrap, higher is better)")
    ax.legend(loc="lower right")
    save_figure(fig, path)


def write_report(models: list[str], metrics_dir: str | os.PathLike[str],
                 summary_path: str | os.PathLike[str],
                 leaderboard_path: str | os.PathLike[str]) -> str:
    records = collect(models, metrics_dir)
    plot_leaderboard(records, leaderboard_path)
    rel = os.path.relpath(leaderboard_path, Path(summary_path).parent)
    labels_path = Path(metrics_dir) / "labels.json"
    parts = ["# Experiment summary", "", markdown_table(records), "",
             f"![leaderboard]({rel})", ""]
    if labels_path.exists():
        labels = read_json(labels_path)
        parts += ["## Data", "", "| subset | clips |", "|---|---:|"]
        parts += [f"| {k} | {v} |" for k, v in labels.get("clips", {}).items()]
        if "measured_noise_rate" in labels:
            parts += ["", f"Label noise in the noisy subset: {labels['measured_noise_rate']:.3f}"]
        parts.append("")
    text = "\n".join(parts)
    write_text(summary_path, text)
    return text
