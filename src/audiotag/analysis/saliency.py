"""Where a model looks: input saliency and per-layer activation maps for a few validation
clips (the Greek notebook drew activations and activation gradients per layer).

- :func:`input_saliency`: ``|d logit_top / d x|``, the gradient of each clip's top class
  logit with respect to its input features (Simonyan et al. 2014), beside the input;
- :func:`activation_maps`: for up to ``max_layers`` convolution layers (input side first,
  evenly spaced; 0: every one), each clip's activation and the magnitude of the top logit's
  gradient with respect to it (a 2-D conv: averaged over channels, an ``F x T`` map; a 1-D
  conv: the ``channels x T`` map itself), and the layer's weights and their gradient (the
  same top logits, summed over the clips);
- :func:`plot_layer_views`: one figure per conv layer of those four (the Greek notebook's
  per-layer views); :func:`plot_activation_maps`: a few layers' maps of every clip.

Shapes: ``B`` clips, ``D`` feature bands, ``T`` frames, ``C`` channels.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import MaxNLocator
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


def evenly_spaced(items: list, n: int) -> list:
    """At most ``n`` of ``items``, evenly spaced, first and last kept (0: all of them)."""
    if n <= 0 or len(items) <= n:
        return list(items)
    picks = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in sorted(set(picks.tolist()))]


def _conv_layers(model: nn.Module, max_layers: int) -> list[tuple[str, nn.Module]]:
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv1d | nn.Conv2d)]
    return evenly_spaced(convs, max_layers)


def activation_maps(model: nn.Module, x: torch.Tensor,
                    max_layers: int = 6) -> list[dict[str, Any]]:
    """Per convolution layer: ``{"layer", "activation", "gradient", "weight",
    "weight_grad"}``: the first two ``(B, H, W)`` (see the module docstring), the gradient
    that of each clip's top class logit; the weights ``(out, in, *kernel)`` and their
    gradient (None for a frozen layer) of the top logits summed over the clips."""
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
    model.zero_grad(set_to_none=True)
    try:  # an input that requires grad: frozen layers' outputs get a gradient too
        total, _ = _top_logit(model, x.detach().clone().requires_grad_(True))
        total.backward()
        weight_grads = {name: None if m.weight.grad is None else m.weight.grad.detach().clone()
                        for name, m in layers}
    finally:
        for handle in handles:
            handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    maps = []
    for name, module in layers:
        out = outputs.get(name)
        if out is None or out.grad is None:
            continue
        act, grad = out.detach(), out.grad.detach().abs()
        if act.dim() == 4:  # (B, C, F, T) -> (B, F, T)
            act, grad = act.mean(dim=1), grad.mean(dim=1)
        maps.append({"layer": name, "activation": act, "gradient": grad,
                     "weight": module.weight.detach().clone(), "weight_grad": weight_grads[name]})
    return maps


def _show(ax, image: np.ndarray, cmap: str = "magma", rows: str = "feature band",
          colorbar: str | None = None):
    """``image`` ``(rows, frames)`` on ``ax`` with its axes labelled (a waveform ``(1,
    samples)``: a curve); with ``colorbar``, a colour bar of that label."""
    ax.tick_params(labelsize=6)
    if image.shape[0] == 1:  # a waveform (1, samples): a curve
        ax.plot(image[0], linewidth=0.4)
        ax.set_xlabel("sample", fontsize=7)
        return None
    shown = ax.imshow(image, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # rows are bins or channels
    ax.set_xlabel("frame (time)", fontsize=7)
    ax.set_ylabel(rows, fontsize=7)
    if colorbar:
        ax.figure.colorbar(shown, ax=ax, pad=0.02).set_label(colorbar, fontsize=6)
    return shown


def plot_saliency(x: torch.Tensor, saliency: torch.Tensor, top: torch.Tensor,
                  scores: torch.Tensor, classes: list[str], path: str | os.PathLike[str],
                  title: str) -> None:
    """One row per clip: its input features and their saliency for its top class (titled
    with that class and its logit, the model's raw output before the sigmoid or softmax)."""
    n = len(x)
    fig, axes = plt.subplots(n, 2, figsize=(9, 2.2 * n + 0.9), squeeze=False,
                             layout="constrained")
    for i in range(n):
        k = int(top[i])
        name = classes[k] if k < len(classes) else f"output {k}"
        _show(axes[i][0], x[i].cpu().numpy(), colorbar="normalised value")
        _show(axes[i][1], saliency[i].cpu().numpy(), cmap="inferno",
              colorbar="|d logit / d input|")
        axes[i][0].set_title(f"clip {i}: input features", fontsize=7)
        axes[i][1].set_title(f"clip {i}: saliency for its top class {name} "
                             f"(logit {float(scores[i, k]):.2f})", fontsize=7)
    fig.suptitle(f"{title}\nbright: the input values that most raise the top class's logit "
                 "(the model's raw output for it, before the sigmoid or softmax)", fontsize=8)
    save_figure(fig, path)


def _no_conv(path: str | os.PathLike[str], title: str) -> None:
    fig, ax = plt.subplots(figsize=(4, 1.5))
    ax.text(0.5, 0.5, "no convolution layer", ha="center", va="center")
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def _rows_label(m: dict[str, Any]) -> str:
    """What a map's rows are: a 2-D conv's frequency bins (channels averaged), a 1-D conv's
    channels."""
    return "frequency bin" if m["weight"].dim() == 4 else "channel"


def plot_activation_maps(maps: list[dict[str, Any]], path: str | os.PathLike[str],
                         title: str) -> None:
    """One row per layer; per clip two columns: the activation and its gradient."""
    if not maps:
        _no_conv(path, title)
        return
    clips = maps[0]["activation"].shape[0]
    fig, axes = plt.subplots(len(maps), 2 * clips, figsize=(2.6 * 2 * clips, 1.9 * len(maps)
                                                            + 0.8), squeeze=False,
                             layout="constrained")
    for row, m in enumerate(maps):
        for i in range(clips):
            _show(axes[row][2 * i], m["activation"][i].cpu().numpy(), "viridis", _rows_label(m))
            _show(axes[row][2 * i + 1], m["gradient"][i].cpu().numpy(), "inferno",
                  _rows_label(m))
            axes[row][2 * i].set_title(f"{m['layer']}, clip {i}: activation", fontsize=7)
            axes[row][2 * i + 1].set_title(f"{m['layer']}, clip {i}: |gradient|", fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def _weight_image(w: torch.Tensor) -> np.ndarray:
    """Weights ``(out, in, *kernel)`` as an image ``(out, in x kernel)``."""
    return w.detach().float().cpu().reshape(w.shape[0], -1).numpy()


def plot_layer_view(m: dict[str, Any], path: str | os.PathLike[str], title: str) -> None:
    """One conv layer: clip 0's activation and its gradient, the weights and their gradient
    (the top class logits of the clips), each with its colour scale."""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2), layout="constrained")
    _show(axes[0], m["activation"][0].cpu().numpy(), "viridis", _rows_label(m), "activation")
    _show(axes[1], m["gradient"][0].cpu().numpy(), "inferno", _rows_label(m),
          "|d top logit / d activation|")
    axes[0].set_title("activation (clip 0)", fontsize=8)
    axes[1].set_title("its gradient (clip 0)", fontsize=8)
    shape = "x".join(str(d) for d in m["weight"].shape)
    for ax, values, name in ((axes[2], m["weight"], "weights"),
                             (axes[3], m["weight_grad"], "weight gradient")):
        if values is None:  # a frozen layer
            ax.text(0.5, 0.5, "no gradient (frozen)", ha="center", va="center")
            ax.axis("off")
            continue
        image = _weight_image(values)
        vmax = float(np.abs(image).max()) or 1.0
        shown = ax.imshow(image, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                          interpolation="nearest")
        fig.colorbar(shown, ax=ax, pad=0.02).set_label(name, fontsize=6)
        ax.set_title(f"{name} ({shape})", fontsize=8)
        ax.set_xlabel("input channel x kernel position", fontsize=7)
        ax.set_ylabel("output channel (filter)", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def layer_view_name(index: int, layer: str) -> str:
    """``layers/<index>_<layer>.png``: input side first, a file name per layer."""
    return f"{index:02d}_{re.sub(r'[^A-Za-z0-9_.-]', '_', layer)}.png"


def plot_layer_views(maps: list[dict[str, Any]], out_dir: str | os.PathLike[str],
                     model: str) -> list[Path]:
    """One figure per layer of ``maps`` in ``out_dir`` (emptied first: a layer of an
    earlier model leaves no file); returns the files."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not maps:  # e.g. a recurrent model: one file says so (DVC keeps no empty directory)
        _no_conv(out / "none.png", f"{model}: per-layer views")
        return [out / "none.png"]
    files = []
    for i, m in enumerate(maps):
        path = out / layer_view_name(i, m["layer"])
        plot_layer_view(m, path, f"{model}: conv layer {i + 1} of {len(maps)}, {m['layer']} "
                        "(validation clips, best epoch; gradients of the top class logit)")
        files.append(path)
    return files
