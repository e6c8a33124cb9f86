"""How each stage's cost and memory grow with the number of clips, projected to FSDKaggle2019.

Runs the default pipeline on the synthetic source at growing sizes (``--sizes``: total clips,
split like the default set: 20 % curated, 60 % noisy, 20 % test; clips ``--min-seconds`` to
``--max-seconds`` long), one epoch per model and per detector fold, each stage alone
(``benchmarks/pipeline.py``: wall s, CPU s of the stage's processes, the peak of their summed
RSS with dvc's own excluded, and the disk it adds to data/ and models/). A run of
``--fixed-size`` clips (120) comes first: each stage's CPU time there is its fixed part (an
upper bound: it includes the work on those clips, a tenth of 1,200's); beside it, the start-up
alone, CPU s of the stage's script with ``--help`` (every import, no work) plus a no-op
``dvc repro --single-item`` of it (dvc's own part).

Then, per stage, over the sizes where the start-up is under 10 % of the stage's CPU time,
it fits ``CPU = fixed + a * (audio seconds)^k`` twice: with the start-up as the fixed part
(a lower bound: k low) and with the small run's CPU time (an upper bound: k high); goal
k <= 1.1, flagged above. It flags a peak RSS over 4 GiB or over 1.5x the stage's peak at the
smallest fitted size. The projection is the default run (``train.epochs`` per model,
``clean.detector.train.epochs`` per detector fold, from the one-epoch runs: fixed + epochs
x a x audio^k, the upper fit; where no k was fitted, the largest size's growing part
scaled linearly) on FSDKaggle2019 (4,970 curated + 19,815 noisy + 4,481 test clips, about
103 h of audio), CPU s per stage, and its wall time on ``--cores`` idle cores (the stages
use one thread; ``features`` its ``features.workers`` processes). Nothing is projected for a GPU.

    python benchmarks/scale.py --sizes 1200 4800 19200 --results /tmp/scale.json
    python benchmarks/scale.py --results /tmp/scale.json --report   # the tables again

``--results``: each finished size is saved there at once; a rerun skips the sizes it holds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import ROOT, disk_mib, make_project, measure_command, stage_times  # noqa: E402

FSD_AUDIO_SECONDS = 103 * 3600.0  # 29,266 clips: curated ~1-30 s, noisy <= 15 s, test
STARTUP_SHARE = 0.10  # a size is fitted where start-up is under this share of the stage's CPU
K_GOAL, RSS_LIMIT_MIB, RSS_GROWTH = 1.1, 4096.0, 1.5


def fit_growth(audio: list[float], cpu: list[float], fixed: float) -> tuple[float, float]:
    """``(a, k)`` of ``cpu = fixed + a * audio**k``, least squares in log-log space over
    the given sizes (at least two, each with ``cpu > fixed``)."""
    grow = np.asarray(cpu, dtype=float) - fixed
    if len(grow) < 2 or (grow <= 0).any():
        raise ValueError(f"need two or more sizes above the fixed {fixed:.1f} s: {list(cpu)}")
    k, log_a = np.polyfit(np.log(np.asarray(audio, dtype=float)), np.log(grow), 1)
    return float(np.exp(log_a)), float(k)


def fit_stage(audio: list[float], cpu: list[float], startup: float, fixed: float) -> dict:
    """The growth of one stage, over the sizes where its ``startup`` (imports + dvc: a lower
    bound of its fixed part) is under ``STARTUP_SHARE`` of its CPU time (``"sizes"``:
    their indices): ``"k_low"`` with the fixed part ``startup``, ``"k_high"`` with
    ``fixed`` (a small run's whole CPU time: an upper bound) where every such size is above
    it. ``"a"``, ``"k"``, ``"fixed"``: the fit the projection uses (the upper one where
    there is one). The ``k`` are None with fewer than two such sizes."""
    used = [i for i, c in enumerate(cpu) if startup < STARTUP_SHARE * c]
    out = {"sizes": used, "k_low": None, "k_high": None, "a": None, "k": None, "fixed": fixed}
    if len(used) < 2:
        return out
    x, c = [audio[i] for i in used], [cpu[i] for i in used]
    a, k = fit_growth(x, c, startup)
    out.update(k_low=k, a=a, k=k, fixed=startup)
    if min(c) > fixed:
        a, k = fit_growth(x, c, fixed)
        out.update(k_high=k, a=a, k=k, fixed=fixed)
    return out


def project(fit: dict, audio: float, epochs: int, last_audio: float, last_cpu: float) -> float:
    """CPU s of a stage at ``audio`` seconds with its growing part ``epochs`` times (one
    epoch was measured): ``fixed + epochs * a * audio**k``; where no ``k`` was fitted,
    the growing part of the largest size (``last_audio``, ``last_cpu``) scaled linearly."""
    if fit["k"] is None:
        grow = max(last_cpu - fit["fixed"], 0.0) * audio / last_audio
        return fit["fixed"] + epochs * grow
    return fit["fixed"] + epochs * fit["a"] * audio ** fit["k"]


def memory_flags(peaks: list[float]) -> str:
    """``"> 4 GiB"`` / ``"> 1.5x"`` (of the first size's peak) where a stage's peak is."""
    flags = []
    if max(peaks) > RSS_LIMIT_MIB:
        flags.append("> 4 GiB")
    if max(peaks) > RSS_GROWTH * peaks[0]:
        flags.append(f"{max(peaks) / peaks[0]:.1f}x")
    return ", ".join(flags)


def _epochs(params: dict, stage: str) -> int:
    """How many epochs the default run trains where ``stage`` ran one."""
    if stage == "clean_labels":
        return int(params["clean"]["detector"]["train"]["epochs"])
    if stage.startswith("train@"):
        own = params.get("models", {}).get(stage.split("@", 1)[1], {}) or {}
        return int((own.get("train") or {}).get("epochs", params["train"]["epochs"]))
    return 1


def measure_startup(work: Path) -> dict[str, float]:
    """Per stage of a finished project: CPU s of its script with ``--help`` (best of two)
    plus a no-op ``dvc repro --single-item`` of it."""
    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    out = {}
    for stage, entry in lock.items():
        script = re.search(r"stages/\w+\.py", entry["cmd"])
        helps = [measure_command([sys.executable, script.group(0), "--help"], work).cpu
                 for _ in range(2)] if script else [0.0]
        noop = measure_command(["dvc", "repro", "--single-item", stage], work).cpu
        out[stage] = min(helps) + noop
    return out


def _audio_seconds(work: Path) -> float:
    with (work / "data/raw/manifest.csv").open() as f:
        return sum(float(row["duration_s"]) for row in csv.DictReader(f))


def run_size(base: dict, n: int, args: argparse.Namespace, startup: bool) -> dict:
    """One project of ``n`` clips, one epoch per model and per detector fold, every stage
    measured; with ``startup``, each stage's start-up too."""
    params = yaml.safe_load(yaml.safe_dump(base))
    params["data"]["synthetic"].update(
        n_curated=n // 5, n_noisy=3 * n // 5, n_test=n - n // 5 - 3 * n // 5,
        min_seconds=args.min_seconds, max_seconds=args.max_seconds)
    params["train"]["epochs"] = 1
    params["clean"]["detector"]["train"]["epochs"] = 1
    work = Path(tempfile.mkdtemp(prefix=f"audiotag-scale-{n}-"))
    try:
        make_project(work, yaml.safe_dump(params, sort_keys=False))
        load = os.getloadavg()[0]
        print(f"--- {n} clips (load average {load:.1f})\n{'stage':28s} {'wall s':>8s} "
              f"{'cpu s':>8s} {'peak MiB':>10s} {'disk MiB':>9s}", flush=True)
        stages = stage_times(work)
        row = {"audio_s": _audio_seconds(work), "load": [load, os.getloadavg()[0]],
               "stages": {name: run._asdict() for name, run in stages.items()},
               "disk_mib": {name: disk_mib(work / name) for name in ("data", "models",
                                                                      ".dvc/cache")}}
        if startup:
            row["startup"] = measure_startup(work)
        return row
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cells(rows: dict[int, dict], sizes: list[int], stage: str, key: str, fmt: str) -> str:
    return " / ".join(f"{rows[n]['stages'][stage][key]:{fmt}}" for n in sizes)


def measured_table(rows: dict[int, dict], sizes: list[int]) -> None:
    """Per stage and size: CPU s, wall s, peak RSS (anonymous part) MiB, disk added MiB."""
    print(f"\n| stage | CPU s | wall s | peak RSS MiB | of it anonymous | disk MiB |"
          f"\n|---|---:|---:|---:|---:|---:|  (each: {' / '.join(map(str, sizes))} clips)")
    for stage in rows[sizes[0]]["stages"]:
        print(f"| {stage} | {_cells(rows, sizes, stage, 'cpu', '.1f')} "
              f"| {_cells(rows, sizes, stage, 'wall', '.1f')} "
              f"| {_cells(rows, sizes, stage, 'peak_mib', '.0f')} "
              f"| {_cells(rows, sizes, stage, 'peak_anon_mib', '.0f')} "
              f"| {_cells(rows, sizes, stage, 'disk_mib', '.0f')} |")


def _k_cell(fit: dict) -> str:
    if fit["k_low"] is None:
        return "- (linear)"
    text = f"{fit['k_low']:.2f}" + ("" if fit["k_high"] is None else f" .. {fit['k_high']:.2f}")
    if fit["k_low"] > K_GOAL:
        return f"{text} **> {K_GOAL}**"
    return f"{text} (> {K_GOAL} at most)" if (fit["k_high"] or 0) > K_GOAL else text


def report(rows: dict[int, dict], base: dict, cores: int, fixed_size: int) -> None:
    """The measured table, the fits and the FSDKaggle2019 projection (markdown). Each
    stage's fixed part is its CPU time at ``fixed_size`` clips (an upper bound: that
    includes the work on those clips); the other sizes are fitted."""
    sizes = sorted(n for n in rows if n != fixed_size)
    startup = rows[fixed_size]["startup"]
    audio = [rows[n]["audio_s"] for n in sizes]
    for n in sorted(rows):
        print(f"{n} clips: {rows[n]['audio_s'] / 3600:.2f} h of audio, load average "
              f"{rows[n]['load'][0]:.1f} -> {rows[n]['load'][1]:.1f}, disk MiB "
              + ", ".join(f"{k} {v:.0f}" for k, v in rows[n]["disk_mib"].items()))
    measured_table(rows, sizes)
    workers = min(cores, max(1, int(base["features"].get("workers", 0))))
    print(f"\n| stage | imports + dvc CPU s | fixed CPU s ({fixed_size} clips) | sizes fitted "
          "| k (fixed: imports + dvc .. the small run) | peak RSS flags | epochs "
          "| FSDKaggle2019 CPU s |\n|---|---:|---:|---|---:|---|---:|---:|")
    total_cpu = total_wall = 0.0
    for stage in rows[sizes[0]]["stages"]:
        cpu = [rows[n]["stages"][stage]["cpu"] for n in sizes]
        fit = fit_stage(audio, cpu, startup[stage], rows[fixed_size]["stages"][stage]["cpu"])
        epochs = _epochs(base, stage)
        full = project(fit, FSD_AUDIO_SECONDS, epochs, audio[-1], cpu[-1])
        total_cpu += full
        total_wall += full / (workers if stage == "features" else 1)
        flags = memory_flags([rows[n]["stages"][stage]["peak_mib"] for n in sizes])
        print(f"| {stage} | {startup[stage]:.1f} "
              f"| {rows[fixed_size]['stages'][stage]['cpu']:.1f} "
              f"| {', '.join(str(sizes[i]) for i in fit['sizes']) or '-'} | {_k_cell(fit)} "
              f"| {flags or '-'} | {epochs} | {full:,.0f} |")
    print(f"\nprojected default run on FSDKaggle2019 ({FSD_AUDIO_SECONDS / 3600:.0f} h): "
          f"{total_cpu:,.0f} CPU s = {total_cpu / 3600:.1f} CPU h; on {cores} idle cores "
          f"{total_wall / 3600:.1f} h wall (stages one after another, one thread each; "
          f"features on {workers} workers)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1200, 4800, 19200])
    parser.add_argument("--fixed-size", type=int, default=120,
                        help="clips of the run whose CPU time per stage is its fixed part")
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                        help="cores of the projected machine")
    parser.add_argument("--results", type=Path, default=None,
                        help="JSON file keeping each finished size (a rerun skips them)")
    parser.add_argument("--report", action="store_true", help="only print --results' tables")
    args = parser.parse_args()
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    rows: dict[int, dict] = {}
    if args.results and args.results.exists():
        rows = {int(n): row for n, row in json.loads(args.results.read_text()).items()}
    for n in [] if args.report else [args.fixed_size, *sorted(args.sizes)]:
        if n not in rows:
            rows[n] = run_size(base, n, args, startup=n == args.fixed_size)
            if args.results:
                args.results.write_text(json.dumps(rows, indent=1))
    if args.fixed_size not in rows or len(rows) < 3:
        sys.exit(f"need the --fixed-size run ({args.fixed_size} clips) and two more sizes")
    report(rows, base, args.cores, args.fixed_size)


if __name__ == "__main__":
    main()
