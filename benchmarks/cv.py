"""k-fold cross-validation (issue 20) against the single model: per seed, the single model's
test lwlrap, the CV lwlrap (mean ± sd over the folds), the out-of-fold lwlrap and the fold
ensemble's test lwlrap; then mean ± sd over the seeds.

    python benchmarks/cv.py --features data/features --labels data/clean/labels.csv \\
        --out /tmp/cv-synthetic

params.yaml's ``train``, ``split`` and ``evaluate`` groups (``train.threads: 1``, CPU), the
model ``--model`` (default cnn1d), ``--k`` folds (default 5). For each ``--seeds`` value s,
the single model trains as ``train@`` does with seed s, the folds are split with seed s
and fold f's model trains with seed s + f, as ``cv_fold@`` does; everything runs in this
one process, one training at a time. Results go to ``<out>/results.jsonl`` (a rerun skips
the seeds already there).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _seed(seed: int, args) -> dict:
    import torch

    torch.set_num_threads(1)
    from audiotag.core.params import parse_group, read_params
    from audiotag.data.config import SplitConfig
    from audiotag.evaluation.config import EvaluateConfig
    from audiotag.evaluation.cv import evaluate_cv
    from audiotag.evaluation.evaluate import evaluate_model
    from audiotag.models import parse_model_params
    from audiotag.training.config import parse_train
    from audiotag.training.cv import run_fold
    from audiotag.training.run import train_model

    raw = read_params(args.params)
    cfg = parse_train(raw, args.params, args.model).model_copy(
        update={"threads": 1, "device": "cpu"})
    split = parse_group(raw, "split", SplitConfig, args.params)
    evaluate = parse_group(raw, "evaluate", EvaluateConfig, args.params).model_copy(
        update={"score_train": False})
    params = parse_model_params(raw, args.model, args.params)
    run = Path(args.out) / str(seed)
    train_model(args.model, params, args.features, run / "single/model", run / "single/live",
                cfg, seed, labels=args.labels)
    single = evaluate_model(run / "single/model/model.pt", args.features,
                            run / "single/metrics.json", run / "single/plots", evaluate)
    folds = list(range(args.k))
    for fold in folds:
        run_fold(args.model, params, args.features, run / "folds" / str(fold), cfg, split,
                 args.k, fold, seed, labels=args.labels)
    cv = evaluate_cv(f"{args.model}_cv", args.model, args.k, folds, run / "folds", evaluate,
                     run / "oof.csv", run / "cv.json", run / "cv_details.json",
                     run / "cv_plots", run / "ensemble.csv")
    return {"seed": seed, "single": single["lwlrap"], "cv_mean": cv["cv_lwlrap_mean"],
            "cv_sd": cv["cv_lwlrap_sd"], "oof": cv["oof_lwlrap"], "ensemble": cv["lwlrap"],
            "fold_epochs": [f["best_epoch"] for f in cv["folds"]]}


def _cell(values: list) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", required=True, help="feature store directory")
    parser.add_argument("--labels", default=None, help="labels file (data/clean/labels.csv)")
    parser.add_argument("--out", required=True, help="directory of the runs and results")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--model", default="cnn1d")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = [json.loads(line) for line in results.read_text().splitlines()] \
        if results.exists() else []
    for seed in [s for s in args.seeds if s not in {r["seed"] for r in done}]:
        record = _seed(seed, args)
        done.append(record)
        with results.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    rows = sorted((r for r in done if r["seed"] in args.seeds), key=lambda r: r["seed"])
    print(f"\n| seed | single {args.model}, test lwlrap | CV lwlrap (mean ± sd over "
          f"{args.k} folds) | out-of-fold lwlrap | fold ensemble, test lwlrap |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['single']:.3f} | {r['cv_mean']:.3f} ± {r['cv_sd']:.3f} "
              f"| {r['oof']:.3f} | {r['ensemble']:.3f} |")
    print(f"| mean ± sd | {_cell([r['single'] for r in rows])} "
          f"| {_cell([r['cv_mean'] for r in rows])} | {_cell([r['oof'] for r in rows])} "
          f"| {_cell([r['ensemble'] for r in rows])} |")


if __name__ == "__main__":
    main()
