"""Independent experiments or one DistributedDataParallel run: which finishes more work?

    python benchmarks/ddp.py                              # cnn1d, 3 epochs, 2 processes
    python benchmarks/ddp.py --model crnn --epochs 2 --processes 3

With N processes (or GPUs, or machines) a team can train N experiments at once, one
process each, or one model over N processes (``train.processes: N``). This runs, on the
workspace's feature store (``data/features``: `dvc pull` or `dvc repro features` first) and
params.yaml with ``--model``, ``--epochs`` and early stopping off:

- ``one``: one run on one process (the reference);
- ``independent``: N runs at once, one process each (N experiments, e.g. ``dvc queue start
  -j N``; the runs differ only by seed here);
- ``ddp``: one run over N processes (``train.processes: N``, gloo on the CPU).

It prints each mode's wall seconds, experiments per hour and the runs' best validation
lwlrap. Figures only, nothing asserted; on a shared machine they are as noisy as its load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _params(tmp: Path, name: str, model: str, epochs: int, processes: int, seed: int) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seed"] = seed
    params["train"].update(models=[model], epochs=epochs, processes=processes,
                           patience=epochs + 1)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _start(tmp: Path, name: str, params: Path, model: str) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "stages/train.py"), "--model", model, "--features",
           str(ROOT / "data/features"), "--out", str(tmp / name / "model"), "--live",
           str(tmp / name / "live"), "--params", str(params)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def run_mode(tmp: Path, mode: str, model: str, epochs: int, n: int) -> tuple[float, list]:
    """Wall seconds of ``mode`` and the best validation lwlrap of each of its runs."""
    runs = {"one": [(1, 0)], "independent": [(1, s) for s in range(n)], "ddp": [(n, 0)]}[mode]
    started = time.perf_counter()
    procs = {f"{mode}-{i}": _start(tmp, f"{mode}-{i}", _params(tmp, f"{mode}-{i}", model,
                                                               epochs, p, seed), model)
             for i, (p, seed) in enumerate(runs)}
    for name, proc in procs.items():
        _, err = proc.communicate()
        if proc.returncode:
            sys.exit(f"{name} failed:\n{err[-2000:]}")
    seconds = time.perf_counter() - started
    scores = [json.loads((tmp / name / "live/metrics.json").read_text())["best"]["valid_lwlrap"]
              for name in procs]
    return seconds, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn1d")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.model}, {args.epochs} epochs, {args.processes} processes, "
          f"{os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("one", "independent", "ddp"):
            seconds, scores = run_mode(Path(tmp), mode, args.model, args.epochs, args.processes)
            print(f"{mode:12s} {seconds:7.1f} s  {len(scores) * 3600 / seconds:6.1f} "
                  f"experiments/h  valid lwlrap {' '.join(f'{s:.3f}' for s in scores)}")


if __name__ == "__main__":
    main()
