"""Stage ``download``: fetch or generate the dataset chosen by ``data.dataset``.

Writes ``<out>/`` with the audio, ``manifest.csv`` + ``classes.txt`` and ``bad_clips.csv``
(unreadable, empty, too short, non-finite or silent files, excluded; truncated WAVs, kept).
Archives are cached in ``$AUDIO_DATA_CACHE``.
"""

from __future__ import annotations

import argparse
import logging

from audiotag.core.io import atomic_dir, shown_as
from audiotag.core.params import parse_seed, read_params
from audiotag.core.stage import run_stage
from audiotag.data.manifest import write_manifest
from audiotag.data.sources import build_dataset, parse_data, parse_data_checks

log = logging.getLogger("download")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, help="output directory, e.g. data/raw")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    raw = read_params(args.params)
    seed = parse_seed(raw, args.params)
    name, cfg = parse_data(raw, args.params)  # all validation before any output
    checks = parse_data_checks(raw, args.params)

    # messages and bad_clips.csv name data/raw/..., not the temporary build that is gone
    with atomic_dir(args.out) as tmp, shown_as(tmp, args.out) as rename:
        manifest, classes = build_dataset(name, cfg, tmp, seed, checks, rename=rename)
        write_manifest(manifest, classes, tmp)
    log.info("%s: %d clips, %d classes -> %s", name, len(manifest), len(classes), args.out)


if __name__ == "__main__":
    run_stage(main)
