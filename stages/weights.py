"""Stage ``weights@<model>``: weight statistics at the first and best epoch, activation
statistics on a validation batch, gradient health over training and its verdict."""

from __future__ import annotations

import argparse

from audiotag.analysis.config import WeightsConfig
from audiotag.analysis.weight_report import analyse_weights
from audiotag.core.params import parse_group, read_params
from audiotag.core.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", required=True,
                        help="models/<model> (model.pt, first_epoch.pt, history.json)")
    parser.add_argument("--features", required=True,
                        help="feature store (a validation batch for activation statistics)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--plots", required=True, help="directory for the figures and CSVs")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    cfg = parse_group(read_params(args.params), "weights", WeightsConfig, args.params)
    analyse_weights(args.model_dir, args.features, args.metrics, args.plots, cfg)


if __name__ == "__main__":
    run_stage(main)
