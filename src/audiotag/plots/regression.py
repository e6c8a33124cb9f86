"""Predicted-vs-true scatter of regression targets."""

from __future__ import annotations

import math
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from audiotag.plots import save_figure


def plot_regression_scatter(rows: pd.DataFrame, path: str | os.PathLike[str],
                            title: str) -> None:
    """One panel per target of ``rows`` (columns ``target, actual, predicted``), with y = x;
    no rows: one empty panel saying so."""
    targets = list(dict.fromkeys(rows["target"]))
    cols = min(3, max(len(targets), 1))
    n_rows = max(math.ceil(len(targets) / cols), 1)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.4 * cols, 3.2 * n_rows), squeeze=False)
    for ax, name in zip(axes.flat, targets, strict=False):
        part = rows[rows["target"] == name]
        ax.scatter(part["actual"], part["predicted"], s=8, alpha=0.6)
        values = np.r_[part["actual"].to_numpy(float), part["predicted"].to_numpy(float)]
        values = values[np.isfinite(values)]
        if len(values):
            lo, hi = values.min(), values.max()
            ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="y = x")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
    for ax in list(axes.flat)[len(targets):]:
        ax.axis("off")
    if not targets:
        axes.flat[0].text(0.5, 0.5, "no regression targets", ha="center", va="center")
    fig.suptitle(title)
    save_figure(fig, path)
