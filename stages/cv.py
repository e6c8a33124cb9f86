"""Stage ``cv@<model>``: k-fold cross-validation results of a model from its fold models
(``cv_fold@<model>-<fold>``): out-of-fold scores, CV lwlrap mean ± sd over the folds, and the
test clips scored by the fold ensemble (the mean of the fold models' scores), evaluated like
an ensemble of models as ``<model>_cv`` (audiotag.evaluation.cv)."""

from __future__ import annotations

import argparse

from audiotag.contracts.names import cv_name
from audiotag.core.errors import ParamsError
from audiotag.core.params import parse_group, read_params
from audiotag.core.stage import run_stage
from audiotag.evaluation.config import EvaluateConfig
from audiotag.evaluation.cv import evaluate_cv
from audiotag.training.config import parse_cv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a name listed in cv.models")
    parser.add_argument("--folds", required=True,
                        help="directory of the fold directories <fold>/ of cv_fold@")
    parser.add_argument("--oof", required=True, help="CSV of the out-of-fold scores")
    parser.add_argument("--metrics", required=True, help="JSON of the headline metrics")
    parser.add_argument("--details", required=True, help="JSON of every metric")
    parser.add_argument("--plots", required=True, help="directory for per_class_lwlrap.csv")
    parser.add_argument("--out", required=True, help="CSV of the fold ensemble's test scores")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    raw = read_params(args.params)
    cv = parse_cv(raw, args.params)
    if args.model not in cv.models:
        raise ParamsError(f"{args.params}: cv.models: {args.model!r} is not listed")
    eval_cfg = parse_group(raw, "evaluate", EvaluateConfig, args.params)
    evaluate_cv(cv_name(args.model), args.model, cv.k, cv.folds, args.folds, eval_cfg,
                args.oof, args.metrics, args.details, args.plots, args.out)


if __name__ == "__main__":
    run_stage(main)
