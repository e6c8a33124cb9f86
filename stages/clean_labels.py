"""Stage ``clean_labels``: find and fix wrong labels (``clean.method``), report label stats."""

from __future__ import annotations

import argparse
import logging

from audiotag.cleaning.run import clean_labels
from audiotag.core.cli import run_stage
from audiotag.core.config import CleanConfig, parse_group, parse_seed, read_params
from audiotag.data.manifest import read_manifest

log = logging.getLogger("clean_labels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True, help="manifest directory from `download`")
    parser.add_argument("--out", required=True, help="output directory, e.g. data/clean")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--plot", required=True, help="CSV of the flagged fraction per class")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    raw = read_params(args.params)  # validate everything before touching an output
    cfg = parse_group(raw, "clean", CleanConfig, args.params)
    seed = parse_seed(raw, args.params)
    manifest, classes = read_manifest(args.raw)
    metrics = clean_labels(manifest, classes, args.raw, args.out, args.metrics, args.plot,
                           cfg, seed)
    log.info("label metrics: %s", {k: v for k, v in metrics.items() if k != "flagged_per_class"})


if __name__ == "__main__":
    run_stage(main)
