"""Stage ``features``: the ``features.kind`` front end of every clip into a memory-mapped store."""

from __future__ import annotations

import argparse
from pathlib import Path

from audiotag.core.params import parse_group, read_params
from audiotag.core.stage import run_stage
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import read_manifest
from audiotag.features.config import FeaturesConfig
from audiotag.features.store import extract_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--manifest", required=True, help="manifest directory, e.g. data/raw")
    parser.add_argument("--out", required=True, help="feature store directory")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    raw = read_params(args.params)
    cfg = parse_group(raw, "features", FeaturesConfig, args.params)
    split = parse_group(raw, "split", SplitConfig, args.params)
    manifest, classes = read_manifest(args.manifest)
    extract_features(manifest, classes, Path(args.manifest), args.out, cfg, split)


if __name__ == "__main__":
    run_stage(main)
