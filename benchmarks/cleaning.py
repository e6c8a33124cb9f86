"""Label-cleaning detection on the default synthetic set: precision, recall, F1 and seconds.

Generates the synthetic dataset of params.yaml (``data.synthetic`` and ``seed``) into a
temporary folder, then runs the ``clean_labels`` work with params.yaml's ``clean`` group
(``-S key=value`` overrides it) and prints the detection scores against the injected label
corruption, the noise left after the action, and the wall time of each phase.

    python benchmarks/cleaning.py                          # params.yaml as it is
    python benchmarks/cleaning.py -S method=agreement -S threshold=0.9
    python benchmarks/cleaning.py -S method=loss -S model=linear
    python benchmarks/cleaning.py --steps     # ms per training step of each fast model only
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch
import yaml

from audiotag.cleaning.fastfeatures import n_fast_frames
from audiotag.cleaning.fastmodel import build_model, model_input, one_thread
from audiotag.cleaning.run import clean_labels
from audiotag.core.config import CleanConfig, parse_group, parse_seed, read_params
from audiotag.data.manifest import read_manifest, write_manifest
from audiotag.data.synthetic import SyntheticConfig, generate

ROOT = Path(__file__).resolve().parents[1]


STEP_MODELS = [  # (label, overrides); the first is the baseline of the ratios
    ("cnn1d without stem", {"model": "cnn1d", "stem_channels": 0}),
    ("cnn1d, stem 8 (default)", {"model": "cnn1d", "stem_channels": 8}),
    ("cnn1d, stem 16", {"model": "cnn1d", "stem_channels": 16}),
    ("cnn2d, channels 16", {"model": "cnn2d", "channels": 16}),
    ("cnn2d, channels 32", {"model": "cnn2d", "channels": 32}),
    ("linear", {"model": "linear"}),
]


def step_times(cfg: CleanConfig, repeats: int = 5) -> None:
    """Milliseconds per training step (forward, backward, AdamW) of ``batch_size`` random
    fast log-mel images on one CPU thread, as in the stage, each against the first model."""
    frames = n_fast_frames(cfg)
    images = torch.randn(cfg.batch_size, cfg.n_mels, frames).numpy()
    targets = (torch.rand(cfg.batch_size, 12) < 0.2).float()
    baseline = None
    print(f"one training step of {cfg.batch_size} clips ({cfg.n_mels} mel bands x {frames} "
          f"frames), one thread:")
    for label, overrides in STEP_MODELS:
        model_cfg = cfg.model_copy(update=overrides)
        x = torch.from_numpy(model_input(images, model_cfg))
        model = build_model(model_cfg, x.shape[1], targets.shape[1]).train()
        opt = torch.optim.AdamW(model.parameters())
        with one_thread():
            for i in range(2 + repeats):
                if i == 2:  # two warm-up steps
                    start = time.perf_counter()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), targets)
                opt.zero_grad()
                loss.backward()
                opt.step()
        ms = (time.perf_counter() - start) / repeats * 1000
        baseline = baseline or ms
        print(f"  {label:26s} {ms:8.1f} ms   x{ms / baseline:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-S", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a clean.* param (YAML value)")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--steps", action="store_true",
                        help="only time one training step of each fast model")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    raw = read_params(args.params)
    seed = parse_seed(raw, args.params)
    clean = dict(raw.get("clean") or {})
    for item in args.overrides:
        key, _, value = item.partition("=")
        clean[key.removeprefix("clean.")] = yaml.safe_load(value)
    cfg = parse_group({"clean": clean}, "clean", CleanConfig, args.params)
    if args.steps:
        step_times(cfg)
        return
    data_cfg = parse_group(raw, "data.synthetic", SyntheticConfig, args.params)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        manifest, classes = generate(data_cfg, root / "raw", seed)
        write_manifest(manifest, classes, root / "raw")
        manifest, classes = read_manifest(root / "raw")
        generated = time.perf_counter() - start
        start = time.perf_counter()
        metrics = clean_labels(manifest, classes, root / "raw", root / "clean",
                               root / "labels.json", root / "flagged.csv", cfg, seed)
        seconds = time.perf_counter() - start

    print(f"dataset: {metrics['clips']}, measured noise rate "
          f"{metrics.get('measured_noise_rate', float('nan')):.3f} ({generated:.1f} s to generate)")
    print(f"clean: method={cfg.method} action={cfg.action} model={cfg.model} "
          f"epochs={cfg.epochs} n_folds={cfg.n_folds}")
    print(f"flagged {metrics['flagged']} noisy clips ({metrics['flagged_fraction']:.3f})")
    for key in ("detection_precision", "detection_recall", "detection_f1", "noise_rate_after"):
        print(f"{key:20s} {metrics.get(key, float('nan')):.3f}")
    print(f"{'seconds':20s} {seconds:.1f}")


if __name__ == "__main__":
    main()
