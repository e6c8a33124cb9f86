"""Stage ``check_params``: validate the whole params.yaml before any other stage works.

DVC runs it whenever params.yaml changes (it depends on the file, not on keys), so a key
no stage declares (``train.epochz``, a ``trian:`` group) is reported too. On success it
writes the same small file every time, so stages downstream re-run only when the params
they declare change.
"""

from __future__ import annotations

import argparse

from audiotag.core.io import write_json
from audiotag.core.stage import run_stage
from audiotag.params_check import check_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", required=True, help="marker written when the params are valid")
    args = parser.parse_args()

    check_params(args.params)
    write_json(args.out, {"params": "valid"})  # constant: downstream hashes never change


if __name__ == "__main__":
    run_stage(main)
