"""How each stage's cost grows with the number of clips, projected to FSDKaggle2019.

Runs the default pipeline on the synthetic source at growing sizes (``--sizes``: total clips,
split like the default set: 20 % curated, 60 % noisy, 20 % test; clips ``--min-seconds`` to
``--max-seconds`` long), one epoch per model and per detector fold, each stage alone
(see ``benchmarks/pipeline.py``), and prints per size and stage the wall time, CPU time, the
peak RSS seen so far (ru_maxrss of the finished child processes: a stage's memory only where
it exceeds every earlier stage's) and the disk used by ``data/``, ``models/``; then, per
stage, its fixed cost (start-up: the intercept of a straight-line fit), the fitted growth
exponent k of the rest, CPU time - fixed ∝ (audio seconds)^k (goal k ≤ 1.1), and the
projected CPU time of one epoch per model on FSDKaggle2019 (4,970 curated + 19,815 noisy +
4,481 test clips, about 103 h of audio) on this machine's cores. No GPU projection is made
unless one is visible to torch.

    python benchmarks/scale.py --sizes 300 600 1200
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import ROOT, make_project, stage_times  # noqa: E402

FSD_AUDIO_SECONDS = 103 * 3600.0  # curated ~1-30 s, noisy <= 15 s, test: ~103 h in all


def _disk(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    args = parser.parse_args()
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    rows: dict[int, dict] = {}
    audio: dict[int, float] = {}
    for n in args.sizes:
        params = yaml.safe_load(yaml.safe_dump(base))
        syn = params["data"]["synthetic"]
        syn.update(n_curated=n // 5, n_noisy=3 * n // 5, n_test=n - n // 5 - 3 * n // 5,
                   min_seconds=args.min_seconds, max_seconds=args.max_seconds)
        params["train"]["epochs"] = 1
        params["clean"]["detector"]["train"]["epochs"] = 1
        work = Path(tempfile.mkdtemp(prefix=f"audiotag-scale-{n}-"))
        try:
            make_project(work, yaml.safe_dump(params, sort_keys=False))
            print(f"--- {n} clips", flush=True)
            rows[n] = stage_times(work)
            audio[n] = n * (args.min_seconds + args.max_seconds) / 2
            disk = _disk(work / "data") + _disk(work / "models")
            print(f"disk (data/, models/): {disk:.0f} MiB", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    sizes = sorted(rows)
    print(f"\n{'stage':24s}" + "".join(f" {f'cpu s @{n}':>12s}" for n in sizes)
          + f" {'fixed s':>8s} {'k':>6s} {'FSDKaggle2019 cpu s':>20s} {'peak RSS MiB':>13s}")
    cores = os.cpu_count() or 1
    total = 0.0
    for stage in rows[sizes[0]]:
        cpu = np.array([rows[n][stage][1] for n in sizes])
        x = np.array([audio[n] for n in sizes])
        # a fixed cost (interpreter, torch import, dvc) plus a part that grows: the
        # intercept of a straight-line fit, kept between 0 and 90 % of the smallest time
        fixed = float(np.clip(np.polyfit(x, cpu, 1)[1], 0.0, 0.9 * cpu.min()))
        grow = np.maximum(cpu - fixed, 1e-3)
        k = float(np.polyfit(np.log(x), np.log(grow), 1)[0])
        projected = fixed + grow[-1] * (FSD_AUDIO_SECONDS / x[-1]) ** k
        total += projected
        flag = "" if k <= 1.1 else "  > 1.1"
        print(f"{stage:24s}" + "".join(f" {c:12.1f}" for c in cpu)
              + f" {fixed:8.1f} {k:6.2f} {projected:20.0f} {rows[sizes[-1]][stage][2]:13.0f}{flag}")
    print(f"projected FSDKaggle2019 run, one epoch per model: {total:.0f} CPU s, "
          f"about {total / 3600:.1f} h on 1 core, {total / cores / 3600:.1f} h if the "
          f"{cores} cores were all used (the stages use one thread)")
    try:
        import torch
        gpu = torch.cuda.is_available()
    except ImportError:
        gpu = False
    if not gpu:
        print("no GPU visible: no GPU projection")


if __name__ == "__main__":
    main()
