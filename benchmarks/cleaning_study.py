"""Label cleaning, measured: test lwlrap with no cleaning, the default, the oracle and the
alternatives, over seeds, with a paired bootstrap over the test clips.

In a temporary copy of the project (``benchmarks/pipeline.py``'s ``make_project``) the data
is generated and its features extracted once, with params.yaml's ``seed``; then, for every
configuration and every ``--seeds`` value, ``clean_labels``, ``train@<model>`` and
``evaluate@<model>`` run alone (``dvc repro --single-item``) with ``seed`` set to that value.
params.yaml's one ``seed`` drives data generation as well as the detector's folds, the
initialisation, the shuffling and the crops; running the data stages once keeps the data
fixed, so the seeds vary only the cleaning's and the training's randomness.

``--dataset synthetic`` (default) is the embedded set with params.yaml's (or ``--set``'s)
``data.synthetic``; ``--dataset fsdd-noisy`` builds the real-audio noisy set of
``benchmarks/fsdd_noisy.py`` from the FSDD archive (``--fsdd``) and points the folder source
at it.

Configurations (``--configs``), each params.yaml with a few keys changed (:data:`CONFIGS`;
all but ``lsoft`` and the ``default`` ones train on plain labels, ``train.lsoft_beta`` 1):
    none      clean.method none (the labels as given)
    default   params.yaml as it is
    oracle    clean.method oracle, action weight (the true labels find the wrong clips)
    cleanlab, relabel, drop   cleanlab's out-of-fold detector with that action
    oracle-relabel, oracle-drop   the oracle with that action (oracle-relabel: the truth)
    loss      small-loss selection: the noisy clips with the highest out-of-fold BCE
    agreement the curated-model agreement filter (a curated-only detector; Bouteillon)
    agreement-crnn   the same with crnn as the curated-only detector
    lsoft     no cleaning, L_soft on noisy clips (train.lsoft_beta 0.7; argus)
    finetune  no cleaning, noisy-then-curated: 3 epochs on curated clips after training
    default-finetune   params.yaml, then the same fine-tuning
Identical ones run once, under their first name.

Every run's result (``result.json``: test lwlrap, detection scores, times) and test
predictions (``<model>.csv``) are kept under ``--out/<dataset>/<config>/seed<k>/``; a run
whose result is there is not run again, so configurations and seeds can be added later.

Prints a markdown table: per configuration and model the test lwlrap mean ± sd over the
seeds and per seed, the gain over ``none`` with its paired-bootstrap 95 % interval (the
per-clip scores averaged over the seeds, the test clips resampled), the fraction of the
oracle's gain it recovers, ``(config - none) / (oracle - none)``, the detection precision /
recall / F1 against the wrong clips and the CPU seconds of ``clean_labels``; then whether
the oracle's gain exceeds the seed spread.

    python benchmarks/cleaning_study.py --seeds 0 1 2 --models crnn cnn1d --jobs 2
"""

from __future__ import annotations

import argparse
import copy
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

import numpy as np
import pandas as pd
import yaml
from pipeline import ROOT, make_project, run_command

from audiotag.core.headline import headline_values
from audiotag.core.params import get_dotted, set_dotted
from audiotag.data.manifest import labels_to_matrix
from audiotag.metrics.lwlrap import clip_precisions, paired_bootstrap_blocks

PLAIN = {"train.lsoft_beta": 1.0}  # the models learn the given labels as they are
CONFIGS: dict[str, dict[str, Any]] = {
    "none": {"clean.method": "none", **PLAIN},
    "default": {},
    "oracle": {"clean.method": "oracle", "clean.action": "weight", **PLAIN},
    "cleanlab": {"clean.method": "cleanlab", "clean.action": "weight", **PLAIN},
    "relabel": {"clean.method": "cleanlab", "clean.action": "relabel", **PLAIN},
    "drop": {"clean.method": "cleanlab", "clean.action": "drop", **PLAIN},
    "oracle-relabel": {"clean.method": "oracle", "clean.action": "relabel", **PLAIN},
    "oracle-drop": {"clean.method": "oracle", "clean.action": "drop", **PLAIN},
    "loss": {"clean.method": "loss", "clean.action": "weight", **PLAIN},
    "agreement": {"clean.method": "agreement", "clean.action": "weight", **PLAIN},
    "agreement-crnn": {"clean.method": "agreement", "clean.action": "weight",
                       "clean.detector.model": "crnn", **PLAIN},
    "lsoft": {"clean.method": "none", "train.lsoft_beta": 0.7},
    "finetune": {"clean.method": "none", "train.finetune_curated_epochs": 3, **PLAIN},
    "default-finetune": {"train.finetune_curated_epochs": 3},
}
DEFAULT_CONFIGS = ["none", "oracle", "cleanlab", "lsoft", "default"]
SHOWN = ["clean.method", "clean.action", "train.lsoft_beta"]  # table columns
DETECTION = ["detection_precision", "detection_recall", "detection_f1"]
RESAMPLES = 2000
_MISSING = object()


@dataclass
class Runs:
    """One configuration's results, one entry per seed."""

    clean: dict[str, Any]  # the SHOWN keys' values ("method", "action")
    lwlrap: dict[str, list[float]] = field(default_factory=dict)  # model -> per seed
    detection: dict[str, list[float]] = field(default_factory=dict)  # DETECTION key -> per seed
    clean_wall: list[float] = field(default_factory=list)
    clean_cpu: list[float] = field(default_factory=list)
    model_cpu: list[float] = field(default_factory=list)  # train + evaluate, all models
    # model -> per seed: (precision sums, true-label counts) per test clip, in clip order
    clips: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)


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
    """Whether the oracle's mean gain over no cleaning exceeds the seed spread (the larger of
    the two configurations' seed standard deviations), and how many times over."""
    gain = mean_sd(oracle)[0] - mean_sd(none)[0]
    spread = max(mean_sd(none)[1], mean_sd(oracle)[1])
    if gain <= 0:
        verdict = f"the oracle gains nothing over none ({gain:+.4f}; seed sd {spread:.4f})"
    else:
        where = "exceeds" if gain > spread else "is inside"
        times = f", {gain / spread:.1f}x" if spread > 0 else ""
        verdict = f"the oracle's gain {gain:+.4f} {where} the seed spread (sd {spread:.4f}{times})"
    return (f"{model}: {verdict}"
            + ("" if gain > spread else ": the recovered fractions are not meaningful"))


def paired_gain(run: Runs, none: Runs, model: str) -> tuple[float, float, float, float] | None:
    """``run - none`` test lwlrap with its paired-bootstrap interval and p: per test clip,
    each configuration's precision sums averaged over its seeds; the clips resampled."""
    a, b = run.clips.get(model), none.clips.get(model)
    if not a or not b:
        return None
    pa = np.mean([p for p, _ in a], axis=0)
    pb = np.mean([p for p, _ in b], axis=0)
    return paired_bootstrap_blocks([(pa, pb, a[0][1])], RESAMPLES, seed=0)


def _fmt(values: list[float]) -> str:
    if not values:
        return "–"
    mean, sd = mean_sd(values)
    return f"{mean:.3f} ± {sd:.3f}"


def _gain_cell(gain: tuple[float, float, float, float] | None) -> str:
    if gain is None:
        return "–"
    diff, low, high, p = gain
    return f"{diff:+.3f} [{low:+.3f}, {high:+.3f}]{' *' if p < 0.05 else ''}"


def study_table(runs: dict[str, Runs], models: list[str]) -> list[str]:
    """The markdown table and the spread lines (``runs`` keyed by configuration label; the
    gain and the recovered fraction need the labels ``none`` and ``oracle``)."""
    head = ["config", *SHOWN]
    for m in models:
        head += [f"{m} test lwlrap", f"{m} per seed", f"{m} gain over none [95 % CI]",
                 f"{m} recovered"]
    head += ["precision", "recall", "F1", "clean CPU s"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "---|" * (1 + len(SHOWN)) + "---:|" * (len(head) - 1 - len(SHOWN))]
    base = {name: run for label, run in runs.items() for name in label.split(" = ")
            if name in ("none", "oracle")}
    for label, run in runs.items():
        cells = [label] + [str(run.clean[k.split(".")[-1]]) for k in SHOWN]
        for m in models:
            cells += [_fmt(run.lwlrap[m]), ", ".join(f"{v:.3f}" for v in run.lwlrap[m])]
            cells.append(_gain_cell(paired_gain(run, base["none"], m)) if "none" in base
                         else "–")
            frac = None
            if len(base) == 2:
                frac = recovered_fraction(mean_sd(base["none"].lwlrap[m])[0],
                                          mean_sd(run.lwlrap[m])[0],
                                          mean_sd(base["oracle"].lwlrap[m])[0])
            cells.append("–" if frac is None else f"{frac:.2f}")
        cells += [_fmt(run.detection.get(key, [])) for key in DETECTION]
        cells.append(f"{statistics.fmean(run.clean_cpu):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    if len(base) == 2:
        lines += [""] + [spread_verdict(m, base["none"].lwlrap[m], base["oracle"].lwlrap[m])
                         for m in models]
    return lines


def _configs(names: list[str], params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Label -> the params it runs with; configurations that come out identical share one
    label (joined by " = ")."""
    labels: list[list[str]] = []
    groups: list[dict[str, Any]] = []
    for name in names:
        group = copy.deepcopy(params)
        for key, value in CONFIGS[name].items():
            set_dotted(group, key, value)
        if group in groups:
            labels[groups.index(group)].append(name)
        else:
            labels.append([name])
            groups.append(group)
    return {" = ".join(label): group for label, group in zip(labels, groups, strict=True)}


def _test_clips(predictions: Path) -> tuple[np.ndarray, np.ndarray]:
    """A predictions table's per-clip precision sums and true-label counts."""
    table = pd.read_csv(predictions, dtype={"clip_id": str, "labels": str},
                        keep_default_na=False).sort_values("clip_id")
    classes = [c for c in table.columns if c not in ("clip_id", "labels")]
    truth = labels_to_matrix(table["labels"], classes)
    return clip_precisions(truth, table[classes].to_numpy(np.float64))


def _one_run(work: Path, params: dict[str, Any], models: list[str], keep: Path) -> dict:
    """clean_labels, then train and evaluate each model, in the project ``work``; the
    result and the test predictions are kept in ``keep``."""
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    clean_wall, clean_cpu, _ = run_command(["dvc", "repro", "--single-item", "clean_labels"], work)
    model_cpu, lwlrap = 0.0, {}
    keep.mkdir(parents=True, exist_ok=True)
    for m in models:
        for stage in (f"train@{m}", f"evaluate@{m}"):
            model_cpu += run_command(["dvc", "repro", "--single-item", stage], work)[1]
        lwlrap[m] = headline_values(json.loads((work / "metrics" / f"{m}.json").read_text()),
                                    m)["lwlrap"]
        shutil.copy2(work / "predictions" / f"{m}.csv", keep / f"{m}.csv")
    labels = json.loads((work / "metrics" / "labels.json").read_text())
    result = {"lwlrap": lwlrap, "detection": {k: labels[k] for k in DETECTION if k in labels},
              "clean_wall": clean_wall, "clean_cpu": clean_cpu, "model_cpu": model_cpu}
    (keep / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _keep(out: Path, label: str, seed: int) -> Path:
    """Where a run's result is kept: under the configuration's first name."""
    return out / label.split(" = ")[0] / f"seed{seed}"


def _collect(runs: Runs, result: dict[str, Any], keep: Path) -> None:
    for m, value in result["lwlrap"].items():
        runs.lwlrap.setdefault(m, []).append(value)
        runs.clips.setdefault(m, []).append(_test_clips(keep / f"{m}.csv"))
    for key, value in result["detection"].items():
        runs.detection.setdefault(key, []).append(value)
    runs.clean_wall.append(result["clean_wall"])
    runs.clean_cpu.append(result["clean_cpu"])
    runs.model_cpu.append(result["model_cpu"])


def _dataset_params(params: dict[str, Any], args: argparse.Namespace, root: Path) -> str:
    """Apply ``--dataset`` and ``--set`` to ``params``; returns the dataset's name."""
    if args.dataset == "fsdd-noisy":
        from fsdd_noisy import build

        _merge(params, build(root / "fsdd_noisy", seed=args.data_seed, archive=args.fsdd))
    for item in args.set:
        key, _, value = item.partition("=")
        if get_dotted(params, key, _MISSING) is _MISSING:
            raise SystemExit(f"--set {item}: params.yaml has no key {key}")
        set_dotted(params, key, yaml.safe_load(value))
    return args.dataset


def _merge(tree: dict[str, Any], over: dict[str, Any]) -> None:
    """``over``'s nested groups into ``tree``, key by key."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value)
        else:
            tree[key] = value


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=None,
                        help="models to train and evaluate (default: params.yaml's train.models)")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, choices=list(CONFIGS))
    parser.add_argument("--dataset", choices=["synthetic", "fsdd-noisy"], default="synthetic")
    parser.add_argument("--fsdd", type=Path, default=ROOT.parent / "shared" / "datasets"
                        / "fsdd" / "free-spoken-digit-dataset-1.0.10.tar.gz",
                        help="the FSDD archive (--dataset fsdd-noisy)")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="the seed the fsdd-noisy set is built with")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="params.yaml keys for every run, e.g. data.synthetic.open_set_rate=0")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir())
                        / "audiotag-cleaning-study", help="where results are kept and reused")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at once (each stage on one torch thread)")
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def main() -> None:
    args = _arguments()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    root = Path(tempfile.mkdtemp(prefix="audiotag-cleaning-study-"))
    name = _dataset_params(params, args, root)
    models = args.models or params["train"]["models"]
    params["train"]["models"] = models
    params["train"]["threads"] = params["evaluate"]["threads"] = 1
    params["clean"]["detector"]["train"]["threads"] = 1
    configs = _configs(args.configs, params)
    out = args.out / name / ("-".join(args.set) or "params")
    print(f"data generated once with seed {params['seed']}; seeds {args.seeds} vary only "
          f"clean_labels and train; models {models}; {len(configs)} configurations x "
          f"{len(args.seeds)} seeds, {args.jobs} at once; results in {out}", flush=True)
    todo = [(label, seed) for seed in args.seeds for label in configs
            if not (_keep(out, label, seed) / "result.json").exists()]
    start = time.perf_counter()
    try:
        if todo:
            _run_all(todo, configs, models, out, root, params, args.jobs, start)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    runs = {label: Runs({k.split(".")[-1]: get_dotted(group, k) for k in SHOWN})
            for label, group in configs.items()}
    for label, run in runs.items():
        for seed in args.seeds:
            keep = _keep(out, label, seed)
            _collect(run, json.loads((keep / "result.json").read_text()), keep)
    print()
    print("\n".join(study_table(runs, models)))
    print(f"\nstudy wall time {time.perf_counter() - start:.0f} s on {os.cpu_count()} cores "
          f"({len(todo)} runs)")


def _run_all(todo: list[tuple[str, int]], configs: dict[str, dict[str, Any]],
             models: list[str], out: Path, root: Path, params: dict[str, Any], jobs: int,
             start: float) -> None:
    base = root / "project"
    base.mkdir()
    make_project(base, yaml.safe_dump(params, sort_keys=False))
    run_command(["dvc", "repro", "features"], base)  # and what it needs (input@ stages)
    free: queue.Queue[Path] = queue.Queue()
    for i in range(jobs):
        free.put(shutil.copytree(base, root / f"job{i}", symlinks=True))

    def task(label: str, seed: int) -> None:
        work = free.get()
        try:
            result = _one_run(work, {**configs[label], "seed": seed}, models,
                              _keep(out, label, seed))
        finally:
            free.put(work)
        print(f"{label:24s} seed {seed}: lwlrap {result['lwlrap']} {result['detection']} "
              f"clean_labels {result['clean_cpu']:.0f} s CPU "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(task, label, seed) for label, seed in todo]:
            future.result()


if __name__ == "__main__":
    main()
