"""Stage ``clean_labels``: find and fix wrong labels (``clean.method``), report label stats."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from audiotag.cleaning.passthrough import clean_passthrough
from audiotag.core.cli import run_stage
from audiotag.core.config import CleanConfig, parse_group, read_params
from audiotag.data.manifest import read_manifest

log = logging.getLogger("clean_labels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--raw", required=True, help="manifest directory from `download`")
    parser.add_argument("--out", required=True, help="output directory, e.g. data/clean")
    parser.add_argument("--metrics", required=True, help="metrics JSON to write")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    parse_group(read_params(args.params), "clean", CleanConfig, args.params)  # validate first
    manifest, classes = read_manifest(args.raw)
    # "none" is the only clean.method so far (the config rejects others): keep every label
    metrics = clean_passthrough(manifest, classes, Path(args.raw), args.out, args.metrics)
    log.info("label stats: %s", metrics)


if __name__ == "__main__":
    run_stage(main)
