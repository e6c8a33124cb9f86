"""The training tools of issue 20, each against the defaults: mean ± sd over seeds.

    python benchmarks/train_tools.py --features data/features --labels data/clean/labels.csv \\
        --out /tmp/tools-synthetic
    python benchmarks/train_tools.py --features /tmp/fsdd/features --out /tmp/tools-fsdd \\
        --arms baseline ema focal
    python benchmarks/train_tools.py --features data/features --labels data/clean/labels.csv \\
        --out /tmp/goals --model crnn --arms baseline --seeds 1 2 3 \\
        --arm lr4 train.lr=0.004 --arm gru32 models.crnn.gru_hidden=32 \\
        --also-eval crops3=/tmp/features-crops3

Each arm is params.yaml's ``train`` group under the model's own ``models.<model>.train``
(``train.threads: 1``, CPU), with the arm's overrides (``train.epochs=1`` does not reach a
model whose own block sets ``epochs``: give ``models.<model>.train.epochs=1``); every arm
x seed trains ``--model`` (default cnn1d) on the given feature store (``--labels``: label
cleaning's labels file, as the train stage reads it) and evaluates it on the store's test
clips (params.yaml's ``evaluate`` group, no train-set scoring), in ``--jobs`` processes at
once. Results go to ``<out>/results.jsonl`` (a rerun skips the
arm x seed pairs already there); the table printed at the end gives test lwlrap (and
accuracy for single-label sets) as mean ± sample sd, and the training seconds. An arm
the task refuses (e.g. ``pos_weight`` on a single-label set) is listed with the reason.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ARMS: dict[str, dict] = {
    "baseline": {},
    "ema": {"ema_decay": 0.99},
    "balanced": {"sampler": "balanced"},
    "focal": {"loss": "focal", "focal_gamma": 2.0},
    "pos_weight": {"pos_weight": "balanced"},
    "gain": {"aug_gain_db": 6.0},
    "shift": {"aug_shift": 0.25},
    "background": {"aug_background": 0.5, "aug_background_db": 10.0},
    "finetune": {"finetune_curated_epochs": 3, "finetune_lr": 0.0005},
}


def _apply(raw: dict, overrides: dict) -> dict:
    """``raw`` with each dotted ``train.*`` / ``models.*`` key of ``overrides`` set."""
    from audiotag.core.params import set_dotted

    raw = copy.deepcopy(raw)
    for key, value in overrides.items():
        dotted = key if key.split(".")[0] in ("train", "models") else f"train.{key}"
        set_dotted(raw, dotted, value)
    return raw


def _job(args: tuple) -> dict:
    arm, seed, model, features, labels, out, params, overrides, also = args
    import torch

    torch.set_num_threads(1)
    from audiotag.core.errors import ParamsError
    from audiotag.core.params import parse_group, read_params
    from audiotag.evaluation.config import EvaluateConfig
    from audiotag.evaluation.evaluate import evaluate_model
    from audiotag.models import parse_model_params
    from audiotag.training.config import parse_train
    from audiotag.training.run import train_model

    raw = _apply(read_params(params), overrides)
    cfg = parse_train(raw, params, model).model_copy(update={"threads": 1, "device": "cpu"})
    run = Path(out) / model / arm / str(seed)
    record = {"model": model, "arm": arm, "seed": seed}
    try:
        history = train_model(model, parse_model_params(raw, model, params), features,
                              run / "model", run / "live", cfg, seed, labels=labels,
                              timings=run / "timings.json")
    except ParamsError as err:
        return {**record, "refused": str(err)}
    evaluate = parse_group(raw, "evaluate", EvaluateConfig, params).model_copy(
        update={"score_train": False})
    metrics = evaluate_model(run / "model/model.pt", features, run / "metrics.json",
                             run / "plots", evaluate)
    for name, store in also.items():
        record[name] = evaluate_model(run / "model/model.pt", store, run / f"{name}.json",
                                      run / f"plots-{name}", evaluate).get("lwlrap")
    timings = json.loads((run / "timings.json").read_text())
    return {**record, "lwlrap": metrics.get("lwlrap"), "accuracy": metrics.get("accuracy"),
            "epochs": len(history), "train_seconds": timings["train_seconds"]}


def _cell(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def _arm(values: list[str]) -> tuple[str, dict]:
    """``NAME KEY=VALUE ...`` -> ``(NAME, {KEY: value})``."""
    name, *items = values
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--arm {name}: {item!r} is not KEY=VALUE")
        overrides[key] = yaml.safe_load(value)
    return name, overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", required=True, help="feature store directory")
    parser.add_argument("--labels", default=None, help="labels file (data/clean/labels.csv)")
    parser.add_argument("--out", required=True, help="directory of the runs and results")
    parser.add_argument("--arms", nargs="*", default=None, choices=list(ARMS),
                        help="built-in arms (default: all of them, unless --arm is given)")
    parser.add_argument("--arm", nargs="+", action="append", default=[],
                        metavar="NAME [KEY=VALUE]", help="an arm of train.*/models.* overrides")
    parser.add_argument("--also-eval", nargs="+", default=[], metavar="NAME=STORE",
                        help="also score each model on these stores (same clips and features)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--model", default="cnn1d")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = parser.parse_args()
    arms = {name: ARMS[name] for name in (args.arms if args.arms is not None
                                          else [] if args.arm else ARMS)}
    arms.update(_arm(values) for values in args.arm)
    also = dict(item.split("=", 1) for item in args.also_eval)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = [json.loads(line) for line in results.read_text().splitlines()] \
        if results.exists() else []
    done = [r for r in done if r.get("model", "cnn1d") == args.model]
    have = {(r["arm"], r["seed"]) for r in done}
    todo = [(arm, seed, args.model, args.features, args.labels, str(out), args.params,
             overrides, also)
            for arm, overrides in arms.items() for seed in args.seeds if (arm, seed) not in have]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for record in pool.imap_unordered(_job, todo):
            done.append(record)
            with results.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    extra = "".join(f" {name} |" for name in also)
    print(f"\n{args.model}: | arm | overrides | test lwlrap |{extra} test accuracy | epochs "
          "| train s | lwlrap per seed |")
    print("|---|---|---:|" + "---:|" * len(also) + "---:|---:|---:|---|")
    for arm, overrides in arms.items():
        rows = sorted((r for r in done if r["arm"] == arm and r["seed"] in args.seeds),
                      key=lambda r: r["seed"])
        text = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "defaults"
        if any("refused" in r for r in rows):
            print(f"| {arm} | {text} | n/a: {rows[0]['refused']} | | | |")
            continue
        cells = "".join(f" {_cell([r.get(name) for r in rows])} |" for name in also)
        seeds = " ".join(f"{r['seed']}:{r['lwlrap']:.3f}" for r in rows)
        print(f"| {arm} | {text} | {_cell([r['lwlrap'] for r in rows])} |{cells}"
              f" {_cell([r['accuracy'] for r in rows])} "
              f"| {_cell([r['epochs'] for r in rows])} "
              f"| {_cell([r['train_seconds'] for r in rows])} | {seeds} |")


if __name__ == "__main__":
    main()
