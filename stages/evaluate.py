"""Stage ``evaluate@<model>``: test-set metrics (lwlrap, mAP, F1, single-label accuracy and
confusion, regression correlations), per-class tables, per-clip test predictions and
overfitting gap; the inference time apart (``--timings``)."""

from __future__ import annotations

import argparse

from audiotag.core.params import parse_group, read_params
from audiotag.core.stage import run_stage
from audiotag.evaluation.config import EvaluateConfig
from audiotag.evaluation.evaluate import evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True,
                        help="models/<model>/model.pt (history.json beside it)")
    parser.add_argument("--features", required=True, help="feature store directory")
    parser.add_argument("--metrics", required=True,
                        help="JSON of the headline metrics to write (test and validation "
                             "lwlrap; accuracy or MSE where the task has them)")
    parser.add_argument("--plots", required=True,
                        help="directory for the per-class, confusion and regression CSVs")
    parser.add_argument("--predictions", default=None,
                        help="CSV of the test clips' scores: clip_id, labels, one column per "
                             "class (and regression target)")
    parser.add_argument("--valid-predictions", default=None,
                        help="CSV of the validation clips' scores, as --predictions (the "
                             "ensemble stage tunes its F1 threshold on them)")
    parser.add_argument("--details", default=None,
                        help="JSON of every metric (per class, per subset, overfitting gap); "
                             "--metrics gets only the headline numbers")
    parser.add_argument("--timings", default=None,
                        help="JSON of the wall-clock inference time (apart from the results: "
                             "it differs between runs and machines)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    cfg = parse_group(read_params(args.params), "evaluate", EvaluateConfig, args.params)
    evaluate_model(args.checkpoint, args.features, args.metrics, args.plots, cfg,
                   args.predictions, args.details, args.valid_predictions, args.timings)


if __name__ == "__main__":
    run_stage(main)
