"""Label cleaning, measured: test lwlrap with no cleaning, the default, the oracle and each action.

In a temporary copy of the project (``benchmarks/pipeline.py``'s ``make_project``) the data
is generated and its features extracted once, with params.yaml's ``seed``; then, for every
configuration and every ``--seeds`` value, ``clean_labels``, ``train@<model>`` and
``evaluate@<model>`` run alone (``dvc repro --single-item``) with ``seed`` set to that value.
params.yaml's one ``seed`` drives data generation as well as the detector's folds, the
initialisation, the shuffling and the crops; running the data stages once keeps the data
fixed, so the seeds vary only the cleaning's and the training's randomness.

Configurations (``--configs``), each params.yaml's ``clean`` group with one change:
    none      clean.method none (the labels as given)
    default   params.yaml's clean group as it is
    oracle    clean.method oracle (the true labels find the corrupted clips: the ceiling)
    weight, relabel, drop   clean.action (with the default method and detector)
    oracle-relabel, oracle-drop   the oracle with that action (oracle-relabel trains on
              the true labels)
Identical ones run once (with the default action ``weight``, ``weight`` is ``default``).

Prints a markdown table: per configuration and model the test lwlrap mean ± sd over the
seeds, the fraction of the oracle's gain it recovers, ``(config - none) / (oracle - none)``,
the detection precision / recall / F1 against the corrupted clips, and the wall and CPU
seconds of ``clean_labels``; then whether the oracle's gain exceeds the seed spread, and
clean_labels' share of the CPU time of the stages run for the default configuration.

    python benchmarks/cleaning_study.py --seeds 0 1 2 --models crnn --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pipeline import ROOT, make_project, run_command

from audiotag.core.headline import headline_values

CONFIGS: dict[str, dict[str, Any]] = {
    "none": {"method": "none"},
    "default": {},
    "oracle": {"method": "oracle"},
    "weight": {"action": "weight"},
    "relabel": {"action": "relabel"},
    "drop": {"action": "drop"},
    "oracle-relabel": {"method": "oracle", "action": "relabel"},
    "oracle-drop": {"method": "oracle", "action": "drop"},
}
DEFAULT_CONFIGS = ["none", "default", "oracle", "weight", "relabel", "drop"]
DATA_STAGES = ["check_params", "download", "features"]
DETECTION = ["detection_precision", "detection_recall", "detection_f1"]


@dataclass
class Runs:
    """One configuration's results, one entry per seed."""

    clean: dict[str, Any]
    lwlrap: dict[str, list[float]] = field(default_factory=dict)  # model -> per seed
    detection: dict[str, list[float]] = field(default_factory=dict)  # DETECTION key -> per seed
    clean_wall: list[float] = field(default_factory=list)
    clean_cpu: list[float] = field(default_factory=list)
    model_cpu: list[float] = field(default_factory=list)  # train + evaluate, all models


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    mean = statistics.fmean(values)
    return mean, statistics.stdev(values) if len(values) > 1 else 0.0


def recovered_fraction(none: float, config: float, oracle: float) -> float | None:
    """Share of the oracle's gain over no cleaning that ``config`` recovers (mean lwlraps);
    None when the oracle gains nothing (the fraction means nothing then)."""
    gain = oracle - none
    return (config - none) / gain if gain > 0 else None


def spread_verdict(model: str, none: list[float], oracle: list[float]) -> str:
    """Whether the oracle's mean gain over no cleaning exceeds the seed spread: the larger
    of the two configurations' seed standard deviations."""
    gain = mean_sd(oracle)[0] - mean_sd(none)[0]
    spread = max(mean_sd(none)[1], mean_sd(oracle)[1])
    if gain <= 0:
        verdict = f"the oracle gains nothing over none ({gain:+.4f}; seed sd {spread:.4f})"
    else:
        where = "exceeds" if gain > spread else "is inside"
        verdict = f"the oracle's gain {gain:+.4f} {where} the seed spread (sd {spread:.4f})"
    return (f"{model}: {verdict}"
            + ("" if gain > spread else ": the recovered fractions are not meaningful"))


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    mean, sd = mean_sd(values)
    return f"{mean:.3f} ± {sd:.3f}"


def study_table(runs: dict[str, Runs], models: list[str]) -> list[str]:
    """The markdown table and the spread lines (``runs`` keyed by configuration label; the
    recovered fraction needs the labels ``none`` and ``oracle``)."""
    head = ["config", "clean.method", "clean.action"]
    head += [f"{m} test lwlrap" for m in models] + [f"{m} recovered" for m in models]
    head += ["precision", "recall", "F1", "clean wall s", "clean CPU s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    base = {name: run for label, run in runs.items() for name in label.split(" = ")
            if name in ("none", "oracle")}
    for label, run in runs.items():
        cells = [label, run.clean["method"], run.clean["action"]]
        cells += [_fmt(run.lwlrap[m]) for m in models]
        for m in models:
            frac = None
            if len(base) == 2:
                frac = recovered_fraction(mean_sd(base["none"].lwlrap[m])[0],
                                          mean_sd(run.lwlrap[m])[0],
                                          mean_sd(base["oracle"].lwlrap[m])[0])
            cells.append("–" if frac is None else f"{frac:.2f}")
        cells += [_fmt(run.detection.get(key, [])) for key in DETECTION]
        cells += [f"{statistics.fmean(run.clean_wall):.1f}",
                  f"{statistics.fmean(run.clean_cpu):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if len(base) == 2:
        lines += [""] + [spread_verdict(m, base["none"].lwlrap[m], base["oracle"].lwlrap[m])
                         for m in models]
    return lines


def _configs(names: list[str], clean: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Label -> clean group; configurations that come out identical share one label."""
    labels: list[list[str]] = []
    groups: list[dict[str, Any]] = []
    for name in names:
        group = {**clean, **CONFIGS[name]}
        if group in groups:
            labels[groups.index(group)].append(name)
        else:
            labels.append([name])
            groups.append(group)
    return {" = ".join(label): group for label, group in zip(labels, groups, strict=True)}


def _one_run(work: Path, params: dict[str, Any], models: list[str]) -> dict[str, Any]:
    """clean_labels, then train and evaluate each model, in the project ``work``."""
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    clean_wall, clean_cpu, _ = run_command(["dvc", "repro", "--single-item", "clean_labels"], work)
    model_cpu, lwlrap = 0.0, {}
    for m in models:
        for stage in (f"train@{m}", f"evaluate@{m}"):
            model_cpu += run_command(["dvc", "repro", "--single-item", stage], work)[1]
        lwlrap[m] = headline_values(json.loads((work / "metrics" / f"{m}.json").read_text()),
                                    m)["lwlrap"]
    labels = json.loads((work / "metrics" / "labels.json").read_text())
    return {"lwlrap": lwlrap, "detection": {k: labels[k] for k in DETECTION if k in labels},
            "clean_wall": clean_wall, "clean_cpu": clean_cpu, "model_cpu": model_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=None,
                        help="models to train and evaluate (default: params.yaml's train.models)")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("--jobs", type=int, default=1,
                        help="configurations run at once (each stage on one torch thread)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    models = args.models or params["train"]["models"]
    params["train"]["models"] = models
    params["train"]["threads"] = params["evaluate"]["threads"] = 1
    params["clean"]["detector"]["train"]["threads"] = 1
    configs = _configs(args.configs, params["clean"])
    data_seed = params["seed"]
    print(f"data generated once with params.yaml's seed {data_seed} (one `seed` drives data "
          f"generation too); seeds {args.seeds} vary only clean_labels and train "
          f"(detector folds, initialisation, shuffling, crops); models {models}; "
          f"{len(configs)} configurations x {len(args.seeds)} seeds, {args.jobs} at once",
          flush=True)

    root = Path(tempfile.mkdtemp(prefix="audiotag-cleaning-study-"))
    start = time.perf_counter()
    try:
        base = root / "project"
        base.mkdir()
        make_project(base, yaml.safe_dump(params, sort_keys=False))
        data_cpu = sum(run_command(["dvc", "repro", "--single-item", stage], base)[1]
                       for stage in DATA_STAGES)
        free: queue.Queue[Path] = queue.Queue()
        for i in range(args.jobs):
            free.put(shutil.copytree(base, root / f"job{i}", symlinks=True))

        def task(label: str, seed: int) -> tuple[str, int, dict[str, Any]]:
            work = free.get()
            try:
                result = _one_run(work, {**params, "seed": seed, "clean": configs[label]},
                                  models)
            finally:
                free.put(work)
            print(f"{label:24s} seed {seed}: lwlrap {result['lwlrap']} "
                  f"{result['detection']} clean_labels {result['clean_wall']:.0f} s wall "
                  f"{result['clean_cpu']:.0f} s CPU ({time.perf_counter() - start:.0f} s)",
                  flush=True)
            return label, seed, result

        runs = {label: Runs(group) for label, group in configs.items()}
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(task, label, seed)
                       for seed in args.seeds for label in configs]
            for future in futures:  # in submission order: seeds in order per configuration
                label, _, result = future.result()
                run = runs[label]
                for m, value in result["lwlrap"].items():
                    run.lwlrap.setdefault(m, []).append(value)
                for key, value in result["detection"].items():
                    run.detection.setdefault(key, []).append(value)
                run.clean_wall.append(result["clean_wall"])
                run.clean_cpu.append(result["clean_cpu"])
                run.model_cpu.append(result["model_cpu"])
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print("\n".join(study_table(runs, models)))
    default = next((run for label, run in runs.items() if "default" in label.split(" = ")),
                   None)
    if default is None:
        return
    clean = statistics.fmean(default.clean_cpu)
    total = data_cpu + clean + statistics.fmean(default.model_cpu)
    print(f"\nclean_labels (default) is {clean / total:.0%} of the CPU time of the stages run "
          f"for it here ({clean:.0f} of {total:.0f} s: {', '.join(DATA_STAGES)}, clean_labels, "
          f"train and evaluate of {', '.join(models)}; the full pipeline also runs weights@ "
          f"and report, so its share there is lower)")
    print(f"study wall time {time.perf_counter() - start:.0f} s on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
