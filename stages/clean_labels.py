"""Stage ``clean_labels``: find and fix wrong labels (``clean.method``) on the feature store,
report label stats, and write the labels file training reads."""

from __future__ import annotations

import argparse
import logging

from audiotag.cleaning.config import parse_clean
from audiotag.cleaning.run import clean_labels
from audiotag.core.params import parse_seed, read_params
from audiotag.core.stage import run_stage

log = logging.getLogger("clean_labels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", required=True, help="feature store from `features`")
    parser.add_argument("--out", required=True, help="output directory, e.g. data/clean")
    parser.add_argument("--metrics", required=True, help="JSON of the headline metrics")
    parser.add_argument("--details", default=None,
                        help="JSON of every metric (clip counts, flagged clips per class)")
    parser.add_argument("--plot", required=True, help="CSV of the flagged fraction per class")
    parser.add_argument("--cooccurrence", default=None,
                        help="PNG of the label co-occurrence per subset")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    raw = read_params(args.params)  # validate everything before touching an output
    cfg, train_cfg, model_params = parse_clean(raw, args.params)
    seed = parse_seed(raw, args.params)
    metrics = clean_labels(args.features, args.out, args.metrics, args.plot, cfg, seed,
                           train_cfg, model_params, args.details,
                           cooccurrence_plot=args.cooccurrence)
    log.info("label metrics: %s", {k: v for k, v in metrics.items()
                                   if k not in ("flagged_per_class", "cooccurrence_noisy_excess")})


if __name__ == "__main__":
    run_stage(main)
