"""Stage ``report``: every model's metrics side by side in reports/summary.md (best per
metric marked, the worst classes, gradient warnings, links to plots) plus a leaderboard."""

from __future__ import annotations

import argparse
import logging

from audiotag.analysis.config import parse_report
from audiotag.analysis.report import write_report
from audiotag.contracts.names import cv_name
from audiotag.core.params import read_params
from audiotag.core.stage import run_stage
from audiotag.evaluation.config import parse_ensembles
from audiotag.training.config import parse_cv, parse_train

log = logging.getLogger("report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", required=True, help="the metrics/ directory")
    parser.add_argument("--out", required=True, help="markdown file to write")
    parser.add_argument("--leaderboard", required=True, help="comparison PNG to write")
    parser.add_argument("--plots", default="plots",
                        help="the plots/ directory the report links to")
    parser.add_argument("--known-issues", default=None,
                        help="optional CSV (clip_id,issue) of known dataset problems to list; "
                             "skipped when the file does not exist")
    parser.add_argument("--models-plots", default=None,
                        help="directory for the CSVs of the top-level plots that overlay "
                             "the models (validation curves, per-class and curated-vs-noisy "
                             "lwlrap)")
    parser.add_argument("--timings", default=None,
                        help="markdown file of the models' wall-clock times (apart from the "
                             "summary, which is the same on every machine)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    raw = read_params(args.params)
    models = parse_train(raw, args.params).models
    ensembles = list(parse_ensembles(raw, args.params))
    # k-fold CV: each cross-validated model's fold ensemble, a row like an ensemble's
    ensembles += [cv_name(m) for m in parse_cv(raw, args.params).models]
    cfg = parse_report(raw, args.params)
    text = write_report(models, args.metrics, args.out, args.leaderboard, args.plots,
                        args.known_issues, args.models_plots, ensembles, args.timings,
                        cfg.suspect_spread)
    log.info("wrote %s\n%s", args.out, text)


if __name__ == "__main__":
    run_stage(main)
