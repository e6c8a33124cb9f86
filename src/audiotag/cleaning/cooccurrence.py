"""Label co-occurrence per subset: which classes are labelled together, curated vs noisy.

The Russian notebook found "Run" and "Walk" together only in the noisy set: a pair that
co-occurs far more often in the noisy labels than in the curated ones is a pattern of
label noise (one label added by the noisy source), not of the sounds. Shapes: ``C``
classes.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from audiotag.data.manifest import labels_to_matrix
from audiotag.plots import save_figure

SUBSETS = ("curated", "noisy")
PAIR_COLUMNS = ["a", "b", "curated", "noisy", "excess"]


def label_cooccurrence(index: pd.DataFrame, classes: list[str],
                       ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """``(matrices, pairs)`` of the ``labels`` of ``index`` (any table with ``labels`` and
    ``subset``).

    ``matrices[subset]``: ``(C, C)``, row ``a`` column ``b`` = the share of the subset's
    clips labelled ``a`` that are also labelled ``b`` (diagonal 1 where ``a`` occurs).
    ``pairs``: per class pair, the share of each subset's clips that carry both, and
    ``excess`` = noisy minus curated; only pairs with a positive excess, largest first.
    """
    matrices, both = {}, {}
    for subset in SUBSETS:
        y = labels_to_matrix(index.loc[index["subset"] == subset, "labels"], classes)  # (N, C)
        counts = y.T.astype(np.float64) @ y  # (C, C): clips with both
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(counts.diagonal()[:, None] > 0,
                             counts / counts.diagonal()[:, None], 0.0)
        matrices[subset] = pd.DataFrame(share, index=classes, columns=classes)
        both[subset] = counts / max(len(y), 1)
    rows = []
    for i in range(len(classes)):
        for j in range(i + 1, len(classes)):
            cur, noisy = float(both["curated"][i, j]), float(both["noisy"][i, j])
            if noisy > cur:
                rows.append([classes[i], classes[j], cur, noisy, noisy - cur])
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    return matrices, pairs.sort_values("excess", ascending=False, kind="stable") \
        .reset_index(drop=True)


def plot_cooccurrence(matrices: dict[str, pd.DataFrame],
                      path: str | os.PathLike[str]) -> None:
    """One heatmap per subset (rows: the class given, columns: the class also given)."""
    n = len(next(iter(matrices.values())))
    size = 2.5 + 0.28 * n
    fig, axes = plt.subplots(1, len(matrices), figsize=(1.3 * size * len(matrices), size),
                             squeeze=False, layout="constrained")  # room for the class names
    for ax, (subset, m) in zip(axes[0], matrices.items(), strict=True):
        image = ax.imshow(m.to_numpy(), vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(n), m.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(n), m.index, fontsize=7)
        ax.set_title(f"{subset}: P(column label | row label)", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    save_figure(fig, path)
