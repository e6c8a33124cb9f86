"""Stage ``ensemble@<name>``: the per-clip scores of the ensemble's member models (written by
``evaluate@<model>``) averaged (mean, geometric mean or rank average) and evaluated like a
model: headline and details metrics, per-class table, per-clip test predictions."""

from __future__ import annotations

import argparse
from pathlib import Path

from audiotag.core.errors import ParamsError
from audiotag.core.params import parse_group, read_params
from audiotag.core.stage import run_stage
from audiotag.evaluation.config import EvaluateConfig, parse_ensembles
from audiotag.evaluation.ensemble import evaluate_ensemble
from audiotag.training.config import parse_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="the ensemble: a key of `ensembles`")
    parser.add_argument("--predictions", required=True,
                        help="directory of the members' predictions: <model>.csv (test) and "
                             "valid/<model>.csv")
    parser.add_argument("--metrics", required=True, help="JSON of the headline metrics")
    parser.add_argument("--details", required=True, help="JSON of every metric")
    parser.add_argument("--plots", required=True, help="directory for per_class_lwlrap.csv")
    parser.add_argument("--out", required=True, help="CSV of the ensemble's test scores")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    raw = read_params(args.params)
    ensembles = parse_ensembles(raw, args.params)
    if args.name not in ensembles:
        raise ParamsError(f"{args.params}: ensembles has no {args.name!r}")
    cfg = ensembles[args.name]
    members = cfg.members(parse_train(raw, args.params).models)
    eval_cfg = parse_group(raw, "evaluate", EvaluateConfig, args.params)
    root = Path(args.predictions)
    evaluate_ensemble(args.name, cfg.method, eval_cfg,
                      {m: root / f"{m}.csv" for m in members},
                      {m: root / "valid" / f"{m}.csv" for m in members},
                      args.metrics, args.details, args.plots, args.out)


if __name__ == "__main__":
    run_stage(main)
