"""Where a model looks: input saliency and per-layer activation maps for a few validation
clips (the Greek notebook drew activations and activation gradients per layer).

- :func:`input_saliency`: ``|d logit_top / d x|``, the gradient of each clip's top class
  logit with respect to its input features (Simonyan et al. 2014), beside the input;
- :func:`activation_maps`: for up to ``max_layers`` convolution layers (input side first,
  evenly spaced), each clip's activation and the magnitude of the top logit's gradient
  with respect to it (a 2-D conv: averaged over channels, an ``F x T`` map; a 1-D conv:
  the ``channels x T`` map itself).

Shapes: ``B`` clips, ``D`` feature bands, ``T`` frames, ``C`` channels.
"""

from __future__ import annotations

import os
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from audiotag.plots import save_figure


def _top_logit(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum over clips of the top logit, top class (B,))`` of an eval-mode pass."""
    logits = model(x)  # (B, K)
    top = logits.detach().argmax(dim=1)
    return logits.gather(1, top[:, None]).sum(), top


def input_saliency(model: nn.Module, x: torch.Tensor,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(saliency (B, D, T), top class (B,), class scores (B, K))``; saliency is the
    absolute gradient of each clip's top logit with respect to its input (clips do not
    interact in eval mode, so one backward pass serves the batch)."""
    was_training = model.training
    model.eval()
    try:
        x = x.detach().clone().requires_grad_(True)
        total, top = _top_logit(model, x)
        total.backward()
        with torch.no_grad():
            scores = model(x.detach())
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return x.grad.detach().abs(), top, scores


def _conv_layers(model: nn.Module, max_layers: int) -> list[tuple[str, nn.Module]]:
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]
    if len(convs) <= max_layers:
        return convs
    picks = np.linspace(0, len(convs) - 1, max_layers).round().astype(int)
    return [convs[i] for i in sorted(set(picks.tolist()))]


def activation_maps(model: nn.Module, x: torch.Tensor,
                    max_layers: int = 6) -> list[dict[str, Any]]:
    """Per convolution layer: ``{"layer", "activation", "gradient"}``, both ``(B, H, W)``
    (see the module docstring), the gradient that of each clip's top class logit."""
    layers = _conv_layers(model, max_layers)
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, _inputs, output) -> None:
            if name not in outputs:  # a module used twice: its first call
                output.retain_grad()
                outputs[name] = output
        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in layers]
    was_training = model.training
    model.eval()
    try:  # an input that requires grad: frozen layers' outputs get a gradient too
        total, _ = _top_logit(model, x.detach().clone().requires_grad_(True))
        total.backward()
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    maps = []
    for name, _ in layers:
        out = outputs.get(name)
        if out is None or out.grad is None:
            continue
        act, grad = out.detach(), out.grad.detach().abs()
        if act.dim() == 4:  # (B, C, F, T) -> (B, F, T)
            act, grad = act.mean(dim=1), grad.mean(dim=1)
        maps.append({"layer": name, "activation": act, "gradient": grad})
    return maps


def _show(ax, image: np.ndarray, cmap: str = "magma") -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if image.shape[0] == 1:  # a waveform (1, samples): a curve
        ax.plot(image[0], linewidth=0.4)
        return
    ax.imshow(image, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest")


def plot_saliency(x: torch.Tensor, saliency: torch.Tensor, top: torch.Tensor,
                  scores: torch.Tensor, classes: list[str], path: str | os.PathLike[str],
                  title: str) -> None:
    """One row per clip: its input features and their saliency for its top class."""
    n = len(x)
    fig, axes = plt.subplots(n, 2, figsize=(8, 1.8 * n + 0.6), squeeze=False)
    for i in range(n):
        k = int(top[i])
        name = classes[k] if k < len(classes) else f"output {k}"
        _show(axes[i][0], x[i].cpu().numpy())
        _show(axes[i][1], saliency[i].cpu().numpy(), cmap="inferno")
        axes[i][0].set_ylabel(f"clip {i}", fontsize=7)
        axes[i][1].set_title(f"saliency for {name} ({float(scores[i, k]):.2f})", fontsize=7)
    axes[0][0].set_title("input (normalised features)", fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def plot_activation_maps(maps: list[dict[str, Any]], path: str | os.PathLike[str],
                         title: str) -> None:
    """One row per layer; per clip two columns: the activation and its gradient."""
    if not maps:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.text(0.5, 0.5, "no convolution layer", ha="center", va="center")
        ax.axis("off")
        ax.set_title(title, fontsize=9)
        save_figure(fig, path)
        return
    clips = maps[0]["activation"].shape[0]
    fig, axes = plt.subplots(len(maps), 2 * clips, figsize=(2.2 * 2 * clips, 1.6 * len(maps)
                                                            + 0.6), squeeze=False)
    for row, m in enumerate(maps):
        for i in range(clips):
            _show(axes[row][2 * i], m["activation"][i].cpu().numpy(), cmap="viridis")
            _show(axes[row][2 * i + 1], m["gradient"][i].cpu().numpy(), cmap="inferno")
            if row == 0:
                axes[row][2 * i].set_title(f"clip {i}: activation", fontsize=7)
                axes[row][2 * i + 1].set_title(f"clip {i}: |gradient|", fontsize=7)
        axes[row][0].set_ylabel(m["layer"], fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
