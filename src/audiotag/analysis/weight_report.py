"""Everything the ``weights@<model>`` stage writes, from a model directory and a feature
store (see :mod:`audiotag.analysis.weights` for the statistics and the verdict)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from audiotag.analysis.config import WeightsConfig
from audiotag.analysis.saliency import (
    activation_maps,
    evenly_spaced,
    input_saliency,
    plot_activation_maps,
    plot_layer_views,
    plot_saliency,
)
from audiotag.analysis.weights import (
    activation_stats,
    gradient_verdict,
    layer_table,
    parameter_stats,
    plot_first_conv_filters,
    plot_gradient_heatmap,
    plot_histograms,
    weight_summary,
)
from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.core.io import atomic_path, read_json, write_json
from audiotag.features.store import FeatureSet
from audiotag.training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)


def validation_batch(features_dir: str | os.PathLike[str], n: int) -> torch.Tensor | None:
    """Up to ``n`` validation clips as one input batch ``(B, dim, T)`` (test clips when the
    store has no validation clips; the first crop of multi-crop items; shorter sequences
    zero-padded, i.e. padded with the training mean)."""
    for role in ("valid", "test"):
        data = FeatureSet(features_dir, (role,))
        if len(data):
            break
    else:
        return None
    xs = [data[i][0] for i in range(min(n, len(data)))]
    xs = [x[0] if x.dim() == 3 else x for x in xs]  # (K, dim, T) -> first crop
    longest = max(x.shape[-1] for x in xs)
    xs = [torch.nn.functional.pad(x, (0, longest - x.shape[-1])) for x in xs]
    return torch.stack(xs)


def _write_csv(rows: list[dict[str, Any]], path: Path, columns: list[str]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False, float_format="%.6g")


ACTIVATION_MAP_LAYERS = 6  # layers of activation_maps.png (every clip); layers/ has them all


def _saliency_plots(model: torch.nn.Module, batch: torch.Tensor | None, meta: CheckpointMeta,
                    cfg: WeightsConfig, plots: Path, name: str) -> None:
    """``saliency.png``, ``activation_maps.png`` and ``layers/`` (one figure per conv
    layer) of the first ``cfg.saliency_clips`` clips of the validation batch (best-epoch
    weights)."""
    x = batch[:cfg.saliency_clips] if batch is not None else None
    if x is None or not len(x):
        log.warning("no validation or test clips: saliency and activation maps stay empty")
        plot_activation_maps([], plots / "saliency.png", f"{name}: no clips")
        plot_activation_maps([], plots / "activation_maps.png", f"{name}: no clips")
        plot_layer_views([], plots / "layers", f"{name} (no clips)")
        return
    saliency, top, scores = input_saliency(model, x)
    classes = list(meta.classes) if meta.task != "regression" else []
    plot_saliency(x, saliency, top, scores, classes, plots / "saliency.png",
                  f"{name}: input saliency |d top logit / d input| (validation clips, "
                  f"best epoch)")
    maps = activation_maps(model, x, max_layers=cfg.layer_views)
    plot_activation_maps(evenly_spaced(maps, ACTIVATION_MAP_LAYERS),
                         plots / "activation_maps.png",
                         f"{name}: activations and their gradients per conv layer "
                         "(top class logit; every layer: layers/)")
    plot_layer_views(maps, plots / "layers", name)


def analyse_weights(model_dir: str | os.PathLike[str], features_dir: str | os.PathLike[str],
                    metrics_path: str | os.PathLike[str], plots_dir: str | os.PathLike[str],
                    cfg: WeightsConfig) -> dict[str, Any]:
    """Write the weight metrics JSON and the figures/CSVs of ``plots_dir``; returns the
    summary (shown by ``dvc exp show``)."""
    model_dir, plots = Path(model_dir), Path(plots_dir)
    model, meta = load_checkpoint(model_dir / "model.pt")
    history = read_json(model_dir / "history.json")
    first_path = model_dir / "first_epoch.pt"
    first_model = load_checkpoint(first_path)[0] if first_path.exists() else None
    if first_model is None:
        log.warning("%s missing: histograms show the best epoch only", first_path)
    records = parameter_stats(model, cfg.near_zero)
    first = parameter_stats(first_model, cfg.near_zero) if first_model is not None else None
    batch = validation_batch(features_dir, cfg.batch_size)
    activations = activation_stats(model, batch) if batch is not None else []
    summary = weight_summary(records, history, first, activations)
    verdict, reasons = gradient_verdict(history, cfg)
    summary["verdict"] = verdict
    name = meta.model_name
    plot_histograms(records, model, cfg.hist_bins, plots / "histograms.png",
                    f"{name}: parameters after epoch 1 and at the best epoch ({meta.epoch})",
                    first_model)
    plot_gradient_heatmap(history, plots / "grad_norms.png", f"{name}: gradient norm per layer")
    plot_gradient_heatmap(history, plots / "update_ratios.png",
                          f"{name}: update-to-weight ratio per layer", key="update_ratios",
                          label="log10 |update| / |weights| (mean over steps)")
    plot_first_conv_filters(model, plots / "first_conv_filters.png",
                            f"{name}: first convolution layer's filters (best epoch)")
    _saliency_plots(model, batch, meta, cfg, plots, name)
    layers = layer_table(records, first, history)
    _write_csv(layers, plots / "layers.csv",
               ["name", "layer", "numel", "mean", "std", "l2", "l2_first", "frac_near_zero",
                "grad_norm_mean", "update_ratio_mean"])
    _write_csv(activations, plots / "activations.csv",
               ["layer", "type", "mean", "std", "frac_zero", "units", "dead_units"])
    # lists stay out of the `dvc exp show` columns; only `summary` scalars become columns
    write_json(metrics_path, {"summary": summary, "verdict_reasons": reasons,
                              "layers": layers, "activations": activations})
    log.info("%s: gradients %s%s", name, verdict, f" ({'; '.join(reasons)})" if reasons else "")
    return summary
