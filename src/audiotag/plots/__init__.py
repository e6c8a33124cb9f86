"""Figures written by stages (matplotlib, headless)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # stages run without a display

import matplotlib.pyplot as plt  # noqa: E402

from audiotag.core.io import atomic_path  # noqa: E402


def save_figure(fig: plt.Figure, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Save ``fig`` atomically as PNG and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)


from audiotag.plots.regression import plot_regression_scatter  # noqa: E402

__all__ = ["plot_regression_scatter", "save_figure"]
