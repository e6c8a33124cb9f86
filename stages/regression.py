"""Stage ``regression@<model>``: the predicted-vs-true scatter of a regression or multitask
model's targets on the test clips (only for the models of ``report.regression_plots``)."""

from __future__ import annotations

import argparse

from audiotag.analysis.regression import write_regression_plot
from audiotag.core.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="the model's name (figure title)")
    parser.add_argument("--predictions", required=True,
                        help="predictions/<model>.csv (evaluate@<model>'s test scores)")
    parser.add_argument("--manifest", required=True,
                        help="the manifest directory (data/raw): the true targets_* values")
    parser.add_argument("--out", required=True, help="regression.csv to write")
    parser.add_argument("--figure", required=True, help="regression.png to write")
    args = parser.parse_args()
    write_regression_plot(args.model, args.predictions, args.manifest, args.out, args.figure)


if __name__ == "__main__":
    run_stage(main)
