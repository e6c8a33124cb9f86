"""Start-up time of the light stage scripts (check_params, explore, ensemble, report).

Each script is started with ``--help`` (its imports run, argparse exits before any work) in a
fresh process, ``--repeats`` times; prints the best wall-clock seconds and whether the process
loaded torch (it should not: docs/benchmarks.md). ``--root`` times another checkout (its
``stages/`` and ``src/``, e.g. a ``git worktree`` of an older commit) with this Python:

    python benchmarks/startup.py                 # best of 5
    python benchmarks/startup.py --repeats 9 --stages report
    git worktree add /tmp/base main && python benchmarks/startup.py --root /tmp/base
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

LIGHT_STAGES = ("check_params", "explore", "ensemble", "report")

# run the script as `python stages/<name>.py --help` does, then say whether torch came in
PROBE = ("import runpy, sys; sys.argv = [{script!r}, '--help']\n"
         "try:\n    runpy.run_path({script!r}, run_name='__main__')\n"
         "except SystemExit:\n    pass\n"
         "print('torch' in sys.modules, file=sys.stderr)")


def startup(stage: str, repeats: int, root: Path) -> tuple[float, bool]:
    """Best wall-clock seconds of ``repeats`` starts of ``root/stages/<stage>.py --help``
    (importing ``root/src``), and whether torch was imported."""
    script = f"stages/{stage}.py"
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    best, torch = float("inf"), False
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PROBE.format(script=script)], cwd=root,
                              env=env, capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - start)
        torch = done.stderr.strip().splitlines()[-1] == "True"
    return best, torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--stages", nargs="+", default=list(LIGHT_STAGES))
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout to time (default: this one)")
    args = parser.parse_args()
    print(f"| stage script | start-up (s, best of {args.repeats}) | imports torch |")
    print("|---|---|---|")
    for stage in args.stages:
        seconds, torch = startup(stage, args.repeats, args.root.resolve())
        print(f"| stages/{stage}.py | {seconds:.2f} | {'yes' if torch else 'no'} |")


if __name__ == "__main__":
    main()
