"""Stage ``explore``: the dataset at a glance, every run (audiotag.analysis.explore): clips
per class and subset, clip durations with their median, example feature images per class."""

from __future__ import annotations

import argparse

from audiotag.analysis.explore import explore_dataset
from audiotag.core.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", required=True, help="manifest directory (data/raw)")
    parser.add_argument("--features", required=True, help="feature store (data/features)")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--plots", required=True, help="directory for the CSV and figures")
    args = parser.parse_args()
    explore_dataset(args.manifest, args.features, args.metrics, args.plots)


if __name__ == "__main__":
    run_stage(main)
