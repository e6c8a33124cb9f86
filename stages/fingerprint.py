"""Stage ``input@<name>``: a content fingerprint of one ``data.inputs`` entry (a file or
folder outside the pipeline that a dataset source reads). DVC re-runs it when the input
changes; ``download`` depends on the fingerprint and so re-runs when the content did."""

from __future__ import annotations

import argparse

from audiotag.core.io import write_json
from audiotag.core.stage import run_stage
from audiotag.data.inputs import fingerprint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", help="the file or folder (a data.inputs value)")
    parser.add_argument("--out", required=True, help="fingerprint JSON to write")
    args = parser.parse_args()
    write_json(args.out, fingerprint(args.path))


if __name__ == "__main__":
    run_stage(main)
