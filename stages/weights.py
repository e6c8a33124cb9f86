"""Stage ``weights@<model>``: per-layer weight statistics and gradient-norm history."""

from __future__ import annotations

import argparse
from pathlib import Path

from audiotag.analysis.weights import (
    parameter_stats,
    plot_gradient_heatmap,
    plot_histograms,
    weight_summary,
)
from audiotag.core.cli import run_stage
from audiotag.core.config import WeightsConfig, parse_group, read_params
from audiotag.core.io import read_json, write_json
from audiotag.training.checkpoint import load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True,
                        help="models/<model> (model.pt, history.json)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--plots", required=True, help="directory for the figures")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    cfg = parse_group(read_params(args.params), "weights", WeightsConfig, args.params)
    model_dir = Path(args.model_dir)
    model, meta = load_checkpoint(model_dir / "model.pt")
    history = read_json(model_dir / "history.json")
    records = parameter_stats(model, cfg.near_zero)
    name = meta["model_name"]
    plots = Path(args.plots)
    plot_histograms(records, model, cfg.hist_bins, plots / "histograms.png",
                    f"{name}: weights at the best epoch ({meta['epoch']})")
    plot_gradient_heatmap(history, plots / "grad_norms.png", f"{name}: gradient norm per layer")
    # "layers" is a list so `dvc exp show` skips it and shows only the summary columns
    write_json(args.metrics, {"summary": weight_summary(records, history), "layers": records})


if __name__ == "__main__":
    run_stage(main)
