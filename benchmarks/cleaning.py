"""Label-cleaning detection on the default synthetic set: precision, recall, F1 and seconds.

Generates the synthetic dataset of params.yaml (``data.synthetic`` and ``seed``) into a
temporary folder, extracts its features (``features``, ``split``) as the pipeline does, then
runs the ``clean_labels`` work with params.yaml's ``clean`` group (``-S key=value`` overrides
it; dotted keys reach into its blocks: ``detector.train.epochs``, ``flag.threshold``) and
prints the detection scores against the injected label corruption, the noise left after the
action, the share of the flagged corrupted clips whose suggested labels are their true
labels, and the wall and CPU seconds of the cleaning. ``--seeds`` runs the cleaning once per
seed on the same data (generated with params.yaml's ``seed``) and prints each metric's
mean ± sd over them.

    python benchmarks/cleaning.py                          # params.yaml as it is
    python benchmarks/cleaning.py -S method=agreement -S flag.threshold=0.9
    python benchmarks/cleaning.py -S detector.model=cnn2d -S detector.train.epochs=4
    python benchmarks/cleaning.py -S method=oracle        # the ceiling
    python benchmarks/cleaning.py --seeds 0 1 2 -S detector.crop_aggregate=max
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from audiotag.cleaning.config import parse_clean
from audiotag.cleaning.run import clean_labels
from audiotag.core.params import parse_group, parse_seed, read_params, set_dotted
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import read_manifest, write_manifest
from audiotag.data.synthetic import SyntheticConfig, generate
from audiotag.features.config import FeaturesConfig
from audiotag.features.store import extract_features

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-S", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a clean.* param (YAML value)")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="cleaning seeds (default: params.yaml's seed); data stays fixed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    raw = read_params(args.params)
    seed = parse_seed(raw, args.params)
    clean = raw.setdefault("clean", {})
    for item in args.overrides:
        key, _, value = item.partition("=")
        set_dotted(clean, key.removeprefix("clean."), yaml.safe_load(value))
    cfg, train_cfg, model_params = parse_clean(raw, args.params)
    data_cfg = parse_group(raw, "data.synthetic", SyntheticConfig, args.params)
    features = parse_group(raw, "features", FeaturesConfig, args.params)
    split = parse_group(raw, "split", SplitConfig, args.params)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        manifest, classes = generate(data_cfg, root / "raw", seed)
        write_manifest(manifest, classes, root / "raw")
        manifest, classes = read_manifest(root / "raw")
        extract_features(manifest, classes, root / "raw", root / "features", features, split)
        prepared = time.perf_counter() - start
        results = []
        for clean_seed in args.seeds or [seed]:
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            out = root / f"clean{clean_seed}"
            metrics = clean_labels(root / "features", out, root / "labels.json",
                                   root / "flagged.csv", cfg, clean_seed, train_cfg,
                                   model_params)
            metrics["seconds"] = time.perf_counter() - start
            end = resource.getrusage(resource.RUSAGE_SELF)
            metrics["cpu_seconds"] = (end.ru_utime + end.ru_stime
                                      - cpu.ru_utime - cpu.ru_stime)
            metrics["suggested_right"] = suggested_right(out / "label_issues.csv")
            results.append(metrics)
            print(f"seed {clean_seed}: " + " ".join(
                f"{key.removeprefix('detection_')} {metrics.get(key, float('nan')):.3f}"
                for key in KEYS), flush=True)

    first = results[0]
    print(f"dataset: {first['clips']}, measured noise rate "
          f"{first.get('measured_noise_rate', float('nan')):.3f} "
          f"({prepared:.1f} s to generate and extract features)")
    print(f"clean: method={cfg.method} action={cfg.action} detector={cfg.detector.model} "
          f"epochs={train_cfg.epochs} n_folds={cfg.detector.n_folds} "
          f"crop_aggregate={cfg.detector.crop_aggregate}; seeds {args.seeds or [seed]}")
    print(f"{'flagged':20s} {_fmt([m['flagged'] for m in results], 1)}")
    for key in KEYS:
        print(f"{key:20s} {_fmt([m.get(key, float('nan')) for m in results])}")


KEYS = ("detection_precision", "detection_recall", "detection_f1", "noise_rate_after",
        "suggested_right", "seconds", "cpu_seconds")


def suggested_right(issues_csv: Path) -> float:
    """Share of the flagged corrupted clips whose suggested labels are their true labels
    (NaN without true labels or without such clips)."""
    issues = pd.read_csv(issues_csv, dtype=str, keep_default_na=False)
    if "true_labels" not in issues.columns:
        return float("nan")
    wrong = issues[issues["labels"] != issues["true_labels"]]
    if not len(wrong):
        return float("nan")
    return float((wrong["suggested_labels"] == wrong["true_labels"]).mean())


def _fmt(values: list[float], digits: int = 3) -> str:
    """Mean ± sample sd (one value: the value alone)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


if __name__ == "__main__":
    main()
