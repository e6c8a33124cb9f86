"""Stage ``cv_fold@<model>-<fold>``: k-fold cross-validation, one fold model: trained on the
other folds' clips, its best epoch chosen on its own fold's, then scoring that fold's clips
(out-of-fold) and the test clips (audiotag.training.cv)."""

from __future__ import annotations

import argparse

from audiotag.core.errors import ParamsError
from audiotag.core.params import parse_group, parse_seed, read_params
from audiotag.core.stage import run_stage
from audiotag.data.config import SplitConfig
from audiotag.models import parse_model_params
from audiotag.training.config import parse_cv, parse_train
from audiotag.training.cv import run_fold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="a name listed in cv.models")
    parser.add_argument("--fold", required=True, type=int, help="a fold listed in cv.folds")
    parser.add_argument("--features", required=True, help="feature store directory")
    parser.add_argument("--out", required=True,
                        help="the fold's directory: model/, live/, oof.csv, test.csv, fold.json")
    parser.add_argument("--labels", default=None,
                        help="labels file of the training clips (label cleaning's "
                             "data/clean/labels.csv); default: the store's labels")
    parser.add_argument("--timings", default=None,
                        help="JSON of the training's wall-clock times (apart from the results)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    raw = read_params(args.params)
    seed = parse_seed(raw, args.params)
    cfg = parse_train(raw, args.params, args.model)
    cv = parse_cv(raw, args.params)
    if args.model not in cv.models:
        raise ParamsError(f"{args.params}: cv.models: {args.model!r} is not listed")
    if args.fold not in cv.folds:
        raise ParamsError(f"{args.params}: cv.folds: fold {args.fold} is not listed")
    split = parse_group(raw, "split", SplitConfig, args.params)
    model_params = parse_model_params(raw, args.model, args.params)
    run_fold(args.model, model_params, args.features, args.out, cfg, split, cv.k, args.fold,
             seed, labels=args.labels, timings=args.timings)


if __name__ == "__main__":
    run_stage(main)
