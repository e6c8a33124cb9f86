"""Label-cleaning detection on the default synthetic set: precision, recall, F1 and seconds.

Generates the synthetic dataset of params.yaml (``data.synthetic`` and ``seed``) into a
temporary folder, extracts its features (``features``, ``split``) as the pipeline does, then
runs the ``clean_labels`` work with params.yaml's ``clean`` group (``-S key=value`` overrides
it; dotted keys reach into ``detector_train``/``detector_params``) and prints the detection
scores against the injected label corruption, the noise left after the action, and the wall
time of each phase.

    python benchmarks/cleaning.py                          # params.yaml as it is
    python benchmarks/cleaning.py -S method=agreement -S threshold=0.9
    python benchmarks/cleaning.py -S detector=cnn2d -S detector_train.epochs=4
    python benchmarks/cleaning.py -S method=oracle        # the ceiling
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import yaml

from audiotag.cleaning.config import parse_clean
from audiotag.cleaning.run import clean_labels
from audiotag.core.params import parse_group, parse_seed, read_params
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    raw = read_params(args.params)
    seed = parse_seed(raw, args.params)
    clean = raw.setdefault("clean", {})
    for item in args.overrides:
        key, _, value = item.partition("=")
        *parents, name = key.removeprefix("clean.").split(".")
        target = clean
        for parent in parents:
            target = target.setdefault(parent, {})
        target[name] = yaml.safe_load(value)
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
        start = time.perf_counter()
        metrics = clean_labels(root / "features", root / "clean", root / "labels.json",
                               root / "flagged.csv", cfg, seed, train_cfg, model_params)
        seconds = time.perf_counter() - start

    print(f"dataset: {metrics['clips']}, measured noise rate "
          f"{metrics.get('measured_noise_rate', float('nan')):.3f} "
          f"({prepared:.1f} s to generate and extract features)")
    print(f"clean: method={cfg.method} action={cfg.action} detector={cfg.detector} "
          f"epochs={train_cfg.epochs} n_folds={cfg.n_folds}")
    print(f"flagged {metrics['flagged']} noisy clips ({metrics['flagged_fraction']:.3f})")
    for key in ("detection_precision", "detection_recall", "detection_f1", "noise_rate_after"):
        print(f"{key:20s} {metrics.get(key, float('nan')):.3f}")
    print(f"{'seconds':20s} {seconds:.1f}")


if __name__ == "__main__":
    main()
