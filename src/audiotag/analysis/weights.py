"""Weight analysis of a trained model: per-layer weight statistics at the first and the
best epoch, activation statistics on a validation batch, and gradient health over training.

Gradient health comes from training's ``history.json`` (per epoch and per layer, the mean
over steps of the gradient L2 norm and of the update-to-weight ratio ``|dW| / |W|``).
:func:`gradient_verdict` turns it into one word for ``dvc exp show``:

- ``exploding``: some layer's gradient norm is not finite or above ``exploding_norm``, or
  the first-to-last layer gradient-norm ratio is above ``exploding_ratio``;
- ``vanishing``: the first-to-last layer gradient-norm ratio is below ``vanishing_ratio``
  (the input layers learn orders of magnitude slower than the output layer);
- ``healthy`` otherwise.

The ratio is the median over epochs of ``norm(first layer) / norm(last layer)``, where the
layers are the modules owning parameters in registration order (input side first), and
first and last are taken among the layers that train. The verdict and the ratio judge the
classification epochs: an autoencoder's reconstruction epochs (``phase: reconstruct``)
train its encoder and decoder, not its head, and its decoder does not train afterwards.
A layer with no gradient in an epoch has no record for it (NaN in the matrices below).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from audiotag.analysis.config import WeightsConfig
from audiotag.plots import save_figure

log = logging.getLogger(__name__)
RELU_LIKE = (nn.ReLU, nn.ReLU6)  # units whose output is 0 on a whole batch are "dead"
SKIP = (nn.Dropout, nn.Identity)  # no statistics worth recording


def parameter_stats(model: torch.nn.Module, near_zero: float) -> list[dict[str, Any]]:
    """One record per parameter tensor: mean, std, L2 norm, fraction with |w| < near_zero."""
    records = []
    for name, param in model.named_parameters():
        w = param.detach().double().flatten().cpu()
        records.append({
            "name": name,
            "numel": w.numel(),
            "mean": float(w.mean()),
            "std": float(w.std()) if w.numel() > 1 else 0.0,
            "l2": float(w.norm()),
            "frac_near_zero": float((w.abs() < near_zero).double().mean()),
        })
    return records


def gradient_matrix(history: dict[str, Any],
                    key: str = "grad_norms") -> tuple[list[str], np.ndarray]:
    """Per-layer values of ``key`` over epochs: ``(layers, (n_layers, n_epochs))``, NaN
    where a layer has no record in an epoch. The layers are those recorded in any epoch, in
    the model order of ``history["layers"]`` (written by training; else first seen first)."""
    epochs = history["epochs"]
    seen = list(dict.fromkeys(layer for e in epochs for layer in e.get(key) or {}))
    rank = {layer: i for i, layer in enumerate(history.get("layers") or [])}
    layers = sorted(seen, key=lambda layer: rank.get(layer, len(rank)))  # stable: unknown last
    matrix = np.array([[_number((e.get(key) or {}).get(layer)) for e in epochs]
                       for layer in layers], dtype=np.float64)
    return layers, matrix.reshape(len(layers), len(epochs))


def _number(value: float | str | None) -> float:
    """A recorded value: a number, or the string ``"inf"``/``"nan"`` that history.json keeps
    for a non-finite one; None (no record) is NaN."""
    return np.nan if value is None else float(value)


def _non_finite(history: dict[str, Any]) -> list[str]:
    """``"<layer> (epoch <n>)"`` for every recorded gradient norm that is NaN or infinite."""
    return [f"{layer} (epoch {e.get('epoch')})" for e in history["epochs"]
            for layer, value in (e.get("grad_norms") or {}).items()
            if value is not None and not math.isfinite(float(value))]


def classification_history(history: dict[str, Any]) -> dict[str, Any]:
    """``history`` restricted to its classification epochs (all epochs if it has none)."""
    epochs = [e for e in history["epochs"] if e.get("phase") != "reconstruct"]
    return {**history, "epochs": epochs or history["epochs"]}


def _first_last(history: dict[str, Any]) -> tuple[str, str, float | None]:
    """The first and last layer with a gradient in the classification epochs and the median
    over those epochs of their gradient-norm ratio (None: fewer than 2 layers)."""
    layers, grads = gradient_matrix(classification_history(history))
    if len(layers) < 2 or grads.shape[1] == 0:
        return "", "", None
    first, last = grads[0], grads[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = first / last  # (epochs,); x/0 -> inf
    ratios = np.where((first == 0) & (last == 0), 0.0, ratios)  # no gradient at all
    ratios = ratios[~np.isnan(ratios)]  # an epoch without a record of either layer
    return layers[0], layers[-1], float(np.median(ratios)) if len(ratios) else None


def grad_ratio_first_last(history: dict[str, Any]) -> float | None:
    """Median over the classification epochs of first-layer / last-layer gradient norm
    (None: < 2 layers)."""
    return _first_last(history)[2]


def gradient_verdict(history: dict[str, Any], cfg: WeightsConfig) -> tuple[str, list[str]]:
    """``(verdict, reasons)``: ``vanishing`` | ``exploding`` | ``healthy`` (see module doc),
    from the classification epochs."""
    _, grads = gradient_matrix(classification_history(history))
    reasons: list[str] = []
    if bad := _non_finite(classification_history(history)):
        reasons.append(f"a gradient norm is not finite: {', '.join(bad[:3])}")
    elif grads.size and np.nanmax(grads) > cfg.exploding_norm:
        reasons.append(f"max gradient norm {np.nanmax(grads):.3g} > {cfg.exploding_norm:g}")
    first, last, ratio = _first_last(history)
    if ratio is not None and ratio > cfg.exploding_ratio:
        reasons.append(f"first/last gradient ratio {ratio:.3g} > {cfg.exploding_ratio:g}")
    if reasons:
        return "exploding", reasons
    if ratio is not None and ratio < cfg.vanishing_ratio:
        return "vanishing", [f"first/last gradient ratio {ratio:.3g} < {cfg.vanishing_ratio:g}"
                             f" ({first} vs {last})"]
    return "healthy", []


def _stat_record(name: str, module: nn.Module, out: torch.Tensor) -> dict[str, Any]:
    out = out.detach().float()
    record = {"layer": name, "type": type(module).__name__, "mean": float(out.mean()),
              "std": float(out.std()) if out.numel() > 1 else 0.0,
              "frac_zero": float((out == 0).float().mean())}
    if isinstance(module, RELU_LIKE) and out.dim() >= 2:
        # a unit (channel / feature, dim 1) is dead when it is 0 for every clip and position
        alive = (out != 0).transpose(0, 1).reshape(out.shape[1], -1).any(dim=1)
        record["units"] = int(out.shape[1])
        record["dead_units"] = int((~alive).sum())
    return record


@torch.no_grad()
def activation_stats(model: nn.Module, x: torch.Tensor) -> list[dict[str, Any]]:
    """Output statistics of every leaf module on one forward pass of ``x`` (eval mode).

    Per module: mean, std, fraction of exact zeros; for ReLU modules also the number of
    dead units (dim 1: channels of a conv, features of a linear layer). Statistics are
    taken inside the forward hook, before any later in-place op changes the tensor.
    """
    records: dict[str, dict[str, Any]] = {}

    def hook(name: str):
        def record(module: nn.Module, _inputs, output) -> None:
            out = output[0] if isinstance(output, tuple) else output
            if name not in records and isinstance(out, torch.Tensor) and out.numel():
                records[name] = _stat_record(name, module, out)
        return record

    leaves = [(name, module) for name, module in model.named_modules()
              if name and not any(True for _ in module.children())
              and not isinstance(module, SKIP)]
    handles = [module.register_forward_hook(hook(name)) for name, module in leaves]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return list(records.values())


def _median_update_ratio(history: dict[str, Any]) -> float | None:
    _, ratios = gradient_matrix(history, "update_ratios")
    finite = ratios[np.isfinite(ratios)]
    return float(np.median(finite)) if finite.size else None


def _r(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(f"{value:.6g}")


def weight_summary(records: list[dict[str, Any]], history: dict[str, Any],
                   first: list[dict[str, Any]] | None = None,
                   activations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Headline numbers, shown as columns by ``dvc exp show`` (the verdict is added by the
    caller, which knows the thresholds)."""
    numel = sum(r["numel"] for r in records)
    near = sum(r["frac_near_zero"] * r["numel"] for r in records)
    _, grads = gradient_matrix(history)
    summary: dict[str, Any] = {
        "n_parameters": numel,
        "l2_total": round(math.sqrt(sum(r["l2"] ** 2 for r in records)), 6),
        "frac_near_zero": round(near / max(numel, 1), 6),
    }
    if first is not None:
        summary["l2_total_first"] = round(math.sqrt(sum(r["l2"] ** 2 for r in first)), 6)
    summary["grad_ratio_first_last"] = _r(grad_ratio_first_last(history))
    summary["grad_norm_max"] = _r(float(np.nanmax(grads))) if np.isfinite(grads).any() else None
    summary["update_ratio_median"] = _r(_median_update_ratio(history))
    relus = [a for a in activations or [] if "units" in a]
    if relus:
        summary["dead_relu_frac"] = round(sum(a["dead_units"] for a in relus)
                                          / sum(a["units"] for a in relus), 6)
    return summary


def layer_table(records: list[dict[str, Any]], first: list[dict[str, Any]] | None,
                history: dict[str, Any]) -> list[dict[str, Any]]:
    """Per parameter: best-epoch stats, first-epoch L2 norm, and its layer's mean gradient
    norm and update-to-weight ratio over training."""
    first_l2 = {r["name"]: r["l2"] for r in first or []}
    layers, grads = gradient_matrix(history)
    ulayers, updates = gradient_matrix(history, "update_ratios")
    grad = {layer: float(np.nanmean(row)) for layer, row in zip(layers, grads, strict=True)
            if np.isfinite(row).any()}
    update = {layer: float(np.nanmean(row)) for layer, row in zip(ulayers, updates, strict=True)
              if np.isfinite(row).any()}
    rows = []
    for rec in records:
        layer = rec["name"].rsplit(".", 1)[0] if "." in rec["name"] else rec["name"]
        rows.append({**rec, "layer": layer, "l2_first": first_l2.get(rec["name"]),
                     "grad_norm_mean": grad.get(layer), "update_ratio_mean": update.get(layer)})
    return rows


def plot_histograms(records: list[dict[str, Any]], model: torch.nn.Module, bins: int,
                    path: str | os.PathLike[str], title: str,
                    first_model: torch.nn.Module | None = None, max_panels: int = 32) -> None:
    """A grid of value histograms, one panel per parameter tensor (weights and biases, at
    most ``max_panels``); with ``first_model``, its values after the first epoch are
    overlaid for comparison."""
    params = dict(model.named_parameters())
    first = dict(first_model.named_parameters()) if first_model is not None else {}
    if len(records) > max_panels:  # deep models: evenly spaced tensors, first and last kept
        keep = np.unique(np.linspace(0, len(records) - 1, max_panels).round().astype(int))
        title = f"{title} ({len(keep)} of {len(records)} tensors)"
        records = [records[i] for i in keep]
    n = len(records)
    cols = min(4, max(n, 1))
    rows = max(math.ceil(n / cols), 1)
    # constrained layout: each panel's two-line title clears the tick labels above it
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows + 0.6), squeeze=False,
                             layout="constrained")
    for ax, rec in zip(axes.flat, records, strict=False):
        best = params[rec["name"]].detach().flatten().cpu().numpy()
        early = first.get(rec["name"])
        early = early.detach().flatten().cpu().numpy() if early is not None else None
        both = best if early is None else np.r_[best, early]
        edges = np.histogram_bin_edges(both, bins=bins)
        if early is not None:  # stairs: one artist per histogram, much faster than ax.hist
            ax.stairs(np.histogram(early, edges)[0], edges, fill=True, color="tab:orange",
                      alpha=0.55, label="first epoch")
        ax.stairs(np.histogram(best, edges)[0], edges, fill=True, color="tab:blue", alpha=0.55,
                  label="best epoch")
        ax.set_title(f"{rec['name']}\nstd {rec['std']:.3g}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if n:
        axes.flat[0].legend(fontsize=6)
    fig.suptitle(title)
    fig.supxlabel("parameter value")
    fig.supylabel("count")
    save_figure(fig, path)


def plot_gradient_heatmap(history: dict[str, Any], path: str | os.PathLike[str], title: str,
                          key: str = "grad_norms",
                          label: str = "log10 gradient L2 norm (mean over steps)") -> None:
    """Layers x epochs heatmap of log10 of ``key`` (gradient norms or update ratios)."""
    layers, grads = gradient_matrix(history, key)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * grads.shape[1] + 3), 0.3 * len(layers) + 1.5))
    if grads.size:
        with np.errstate(divide="ignore"):
            image = ax.imshow(np.log10(grads), aspect="auto", cmap="viridis",
                              extent=(0.5, grads.shape[1] + 0.5, len(layers) - 0.5, -0.5))
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
        fig.colorbar(image, ax=ax, label=label)
    else:
        ax.text(0.5, 0.5, f"no {key} in history.json", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("layer (input at top)")
    ax.set_title(title)
    save_figure(fig, path)


def first_conv(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first Conv1d/Conv2d module in registration order (input side), or None."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            return name, module
    return None


def plot_first_conv_filters(model: nn.Module, path: str | os.PathLike[str], title: str,
                            max_filters: int = 64) -> None:
    """The first convolution layer's filters as images on one shared colour scale.

    Conv2d ``(out, in, kh, kw)``: one ``kh x kw`` tile per filter (input channels averaged
    when there are several); Conv1d ``(out, in, k)``: one ``in x k`` tile per filter
    (input channels, e.g. mel bands, on the vertical axis).
    """
    found = first_conv(model)
    if found is None:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, "no convolution layer", ha="center", va="center")
        ax.axis("off")
        ax.set_title(title)
        save_figure(fig, path)
        return
    name, conv = found
    w = conv.weight.detach().float().cpu().numpy()
    tiles = w.mean(axis=1) if w.ndim == 4 else w  # (out, h, w)
    tiles = tiles[:max_filters]
    cols = min(8, len(tiles))
    rows = math.ceil(len(tiles) / cols)
    vmax = float(np.abs(tiles).max()) or 1.0
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols + 1.2, 1.1 * rows + 0.8),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= len(tiles):
            ax.axis("off")
            continue
        image = ax.imshow(tiles[i], cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto",
                          interpolation="nearest")
        ax.set_title(str(i), fontsize=6)
    fig.colorbar(image, ax=axes.ravel().tolist(), label="weight", shrink=0.8)
    shape = "x".join(str(s) for s in w.shape)
    fig.suptitle(f"{title}\n{name} ({shape}); x: kernel width"
                 f"{'' if w.ndim == 4 else ', y: input channel'}", fontsize=9, y=1.0 + 0.12 / rows)
    save_figure(fig, path)
