"""Per-layer weight statistics and the gradient-norm history of a trained model."""

from __future__ import annotations

import math
import os
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from audiotag.plots import save_figure


def parameter_stats(model: torch.nn.Module, near_zero: float) -> list[dict[str, Any]]:
    """One record per parameter tensor: mean, std, L2 norm, fraction with |w| < near_zero."""
    records = []
    for name, param in model.named_parameters():
        w = param.detach().double().flatten()
        records.append({
            "name": name,
            "numel": w.numel(),
            "mean": float(w.mean()),
            "std": float(w.std()) if w.numel() > 1 else 0.0,
            "l2": float(w.norm()),
            "frac_near_zero": float((w.abs() < near_zero).double().mean()),
        })
    return records


def gradient_matrix(history: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """Per-layer gradient norms over epochs: ``(layers, (n_layers, n_epochs))``."""
    epochs = history["epochs"]
    layers = list(epochs[0]["grad_norms"]) if epochs else []
    matrix = np.array([[e["grad_norms"].get(layer, np.nan) for e in epochs] for layer in layers])
    return layers, matrix.reshape(len(layers), len(epochs))


def weight_summary(records: list[dict[str, Any]], history: dict[str, Any]) -> dict[str, Any]:
    """A few headline numbers, shown as columns by ``dvc exp show``."""
    numel = sum(r["numel"] for r in records)
    near = sum(r["frac_near_zero"] * r["numel"] for r in records)
    layers, grads = gradient_matrix(history)
    summary: dict[str, Any] = {
        "n_parameters": numel,
        "l2_total": round(math.sqrt(sum(r["l2"] ** 2 for r in records)), 6),
        "frac_near_zero": round(near / max(numel, 1), 6),
    }
    if len(layers) >= 2:  # first vs last layer, last epoch: << 1 means vanishing gradients
        first, last = grads[0, -1], grads[-1, -1]
        summary["grad_ratio_first_last"] = round(float(first / last), 6) if last > 0 else None
    return summary


def plot_histograms(records: list[dict[str, Any]], model: torch.nn.Module, bins: int,
                    path: str | os.PathLike[str], title: str) -> None:
    """A grid of value histograms, one panel per parameter tensor."""
    params = dict(model.named_parameters())
    n = len(records)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, rec in zip(axes.flat, records, strict=False):
        ax.hist(params[rec["name"]].detach().flatten().numpy(), bins=bins, color="tab:blue")
        ax.set_title(f"{rec['name']}\nstd {rec['std']:.3g}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title)
    fig.supxlabel("weight value")
    fig.supylabel("count")
    save_figure(fig, path)


def plot_gradient_heatmap(history: dict[str, Any], path: str | os.PathLike[str],
                          title: str) -> None:
    """Layers x epochs heatmap of log10 gradient norms."""
    layers, grads = gradient_matrix(history)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * grads.shape[1] + 3), 0.3 * len(layers) + 1.5))
    with np.errstate(divide="ignore"):
        image = ax.imshow(np.log10(grads), aspect="auto", cmap="viridis",
                          extent=(0.5, grads.shape[1] + 0.5, len(layers) - 0.5, -0.5))
    ax.set_yticks(range(len(layers)), layers, fontsize=7)
    ax.set_xlabel("epoch")
    ax.set_ylabel("layer (input at top)")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="log10 gradient L2 norm (mean over steps)")
    save_figure(fig, path)
