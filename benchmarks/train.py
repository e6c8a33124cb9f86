"""Training throughput per registered model, and how long a step waits for data.

    python benchmarks/train.py                          # every model, 3 s each, data-wait share
    python benchmarks/train.py --models cnn2d resnet18 --seconds 10 --threads 2
    python benchmarks/train.py --skip-data              # throughput only

Throughput (clips/s): each model (its params.yaml settings) trains on random tensors of the
default run's shape (params.yaml: ``data.synthetic.num_classes`` classes, ``features.n_mels``
mels x the frames of ``features.clip_seconds`` at ``features.hop_length``) with AdamW + BCE,
batch ``train.batch_size``, on the CPU; one warm-up step, then steps until ``--seconds`` have
passed (at least 2). Data-wait share: a small tone dataset (``tests/helpers.py``) goes
through the real ``extract_features`` into a FeatureSet store; ``cnn2d`` (and
``--data-models``) then train on it through the same DataLoader settings as the train
stage, and the time spent in ``next(loader)`` is reported as a share of the step time.
Models that take raw audio only (``mixnet``) get 4 s of 16 kHz waveform instead. On a CUDA
machine ``--gpu-models`` (cnn2d, resnet18) are also timed on the GPU in float32 and with
AMP (autocast + GradScaler, as ``train.amp``), with the GPU utilisation, at each
``--gpu-batch`` size (32 and 256: small batches leave a large GPU waiting on kernel launches).
Overhead (``--overhead``, on by default for cnn1d and crnn: ``--overhead-models``): on a real
feature store (``--features``, default the pipeline's ``data/features`` with
``data/clean/labels.csv``), each model's first epoch of the train stage's recipe
(``build_run``, params.yaml's settings, one thread: the Trainer's training pass, then its
validation) against a minimal loop a user would write over the same model (same initial
weights) and the same batches (the recipe's loader, same seed)::

    for b in loader: opt.zero_grad(); loss = bce(model(b.x), b.y); loss.backward(); opt.step()

with AdamW at ``train.lr`` / ``train.weight_decay``, alternated ``--repeats`` times (best of
each); the step-time ratio Trainer / bare loop on CPU time (the process's, so the figure
holds on a loaded machine) and wall time, and the ratio without the per-layer gradient
norms and update-to-weight ratios the Trainer records every step (their cost).
``--profile`` adds a cProfile of one Trainer pass.
Prints figures only; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from audiotag.data.config import SplitConfig  # noqa: E402
from audiotag.features.config import FeaturesConfig  # noqa: E402
from audiotag.features.store import FeatureSet, collate_clips, extract_features  # noqa: E402
from audiotag.models import MODELS, create_model, list_models, parse_model_params  # noqa: E402

_PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
_F = _PARAMS["features"]
NUM_CLASSES = _PARAMS["data"]["synthetic"]["num_classes"]
N_MELS = _F["n_mels"]
FRAMES = int(_F["clip_seconds"] * _F["sample_rate"]) // _F["hop_length"] + 1  # centred STFT
BATCH = _PARAMS["train"]["batch_size"]


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
          y: torch.Tensor, scaler: torch.amp.GradScaler | None = None) -> None:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, enabled=scaler is not None):
        loss = nn.functional.binary_cross_entropy_with_logits(model(x).float(), y)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


def model_params(name: str) -> dict:
    """``models.<name>`` of the repo's params.yaml over ``models.defaults`` (validated)."""
    return parse_model_params(yaml.safe_load((ROOT / "params.yaml").read_text()), name)


def _input(name: str, batch: int = BATCH) -> tuple[int, torch.Tensor]:
    """``(n_mels, batch)``: 4 s of 16 kHz waveform for models that take raw audio only,
    else a log-mel batch."""
    if MODELS.get(name).input == "waveform":
        return 1, torch.randn(batch, 1, 64000)
    return N_MELS, torch.randn(batch, N_MELS, FRAMES)


def throughput(name: str, seconds: float, device: str = "cpu", amp: bool = False,
               batch: int = BATCH) -> tuple[float, int]:
    """``(clips per second, parameters)`` of training ``name`` on random batches."""
    torch.manual_seed(0)
    n_mels, x = _input(name, batch)
    model = create_model(name, NUM_CLASSES, n_mels, **model_params(name)).train().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = x.to(device)
    y = (torch.rand(batch, NUM_CLASSES) < 0.2).float().to(device)
    scaler = torch.amp.GradScaler(device) if amp else None
    _step(model, optimizer, x, y, scaler)  # warm-up: allocator, oneDNN/cuDNN kernels
    _sync(device)
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        _step(model, optimizer, x, y, scaler)
        steps += 1
    _sync(device)
    return steps * batch / (time.perf_counter() - start), sum(p.numel() for p in model.parameters())


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def gpu_report(models: list[str], seconds: float, batch: int = BATCH) -> None:
    """On a CUDA machine: clips/s in float32 and with AMP, and the GPU's utilisation."""
    print(f"\nCUDA: {torch.cuda.get_device_name(0)}, batch {batch}")
    print(f"{'model':<20}{'fp32 clips/s':>14}{'AMP clips/s':>14}{'AMP gain':>10}{'GPU util':>10}")
    for name in models:
        fp32, _ = throughput(name, seconds, "cuda", batch=batch)
        amp, _ = throughput(name, seconds, "cuda", amp=True, batch=batch)
        try:
            util = f"{torch.cuda.utilization():>9}%"
        except Exception:  # needs pynvml / nvidia-ml-py
            util = f"{'n/a':>10}"
        print(f"{name:<20}{fp32:>14.1f}{amp:>14.1f}{amp / fp32:>9.2f}x{util}", flush=True)


def build_store(root: Path, clips: int) -> Path:
    """Extract 64-band log-mels of ``clips`` generated tone clips into a store under ``root``."""
    from helpers import write_tone_dataset  # tests/helpers.py: sine-tone clips, 0.5-1.5 s

    counts = (("curated", clips // 2), ("noisy", clips - clips // 2), ("test", 4))
    manifest, classes = write_tone_dataset(root / "raw", counts=counts, sr=16000)
    store = root / "features"
    extract_features(manifest, classes, root / "raw", store, FeaturesConfig(workers=0),
                     SplitConfig())
    return store


def data_wait_share(store: Path, name: str, epochs: int, workers: int) -> tuple[float, float]:
    """``(share of step time waiting for the loader, clips/s)`` training ``name`` on ``store``."""
    data = FeatureSet(store, ("train",), train=True)
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, drop_last=len(data) > BATCH,
                        collate_fn=collate_clips, num_workers=workers)
    model = create_model(name, len(data.classes), data.dim, **model_params(name)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    wait = compute = 0.0
    clips = 0
    for _ in range(epochs):
        batches = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
                x, y = batch.x, batch.y
            except StopIteration:
                break
            t1 = time.perf_counter()
            _step(model, optimizer, x, y)
            compute += time.perf_counter() - t1
            wait += t1 - t0
            clips += len(x)
    return wait / (wait + compute), clips / (wait + compute)


def _recipe_run(name: str, features: Path, labels: Path | None):
    """The train stage's run of ``name`` (params.yaml, seed, one thread, CPU), built anew:
    every call gives the same initial weights and the same batches."""
    from audiotag.core.params import read_params
    from audiotag.training import distributed
    from audiotag.training.config import parse_train
    from audiotag.training.recipe import Recipe, StoreClips, build_run

    path = ROOT / "params.yaml"
    raw = read_params(path)
    cfg = parse_train(raw, str(path), name).model_copy(update={"threads": 1, "device": "cpu"})
    recipe = Recipe(name, model_params(name), features, cfg, int(raw["seed"]),
                    StoreClips(labels))
    ctx, device = distributed.setup("cpu")
    return build_run(recipe, ctx, device), cfg


def bare_epoch(model: nn.Module, loader: DataLoader, lr: float,
               weight_decay: float) -> tuple[float, float, int]:
    """``(wall s, CPU s, steps)`` of one epoch of the loop a user would write."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    bce = nn.BCEWithLogitsLoss()
    model.train()
    wall, cpu, steps = time.perf_counter(), time.process_time(), 0
    for b in loader:
        opt.zero_grad()
        loss = bce(model(b.x), b.y)
        loss.backward()
        opt.step()
        steps += 1
    return time.perf_counter() - wall, time.process_time() - cpu, steps


def trainer_epoch(trainer) -> dict[str, float]:
    """One ``Trainer.run_epoch`` (the train stage's first epoch): wall and CPU s of its
    training pass (``train_*``) and of the whole epoch with validation (``epoch_*``)."""
    spent = {"train_wall": 0.0, "train_cpu": 0.0}
    inner = trainer._train_epoch

    def timed(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        out = inner(*args, **kwargs)
        spent["train_wall"] += time.perf_counter() - wall
        spent["train_cpu"] += time.process_time() - cpu
        return out

    trainer._train_epoch = timed  # this instance only
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.run_epoch()
    return {**spent, "epoch_wall": time.perf_counter() - wall,
            "epoch_cpu": time.process_time() - cpu}


@contextlib.contextmanager
def _no_layer_records():
    """The Trainer without its per-layer gradient norms and update-to-weight ratios (what
    their cost is)."""
    from audiotag.training import optim

    saved = optim.grad_norms, optim.update_ratios
    optim.grad_norms = optim.update_ratios = lambda *args: {}
    try:
        yield
    finally:
        optim.grad_norms, optim.update_ratios = saved


def overhead(name: str, features: Path, labels: Path | None, repeats: int) -> dict[str, float]:
    """Best of ``repeats`` alternated runs of the bare loop and the Trainer's first epoch."""
    torch.set_num_threads(1)
    best: dict[str, float] = {}
    for _ in range(repeats):
        built, cfg = _recipe_run(name, features, labels)
        wall, cpu, steps = bare_epoch(built.trainer.model, built.trainer.loaders.train, cfg.lr,
                                      cfg.weight_decay)
        runs = {"bare_wall": wall, "bare_cpu": cpu,
                **trainer_epoch(_recipe_run(name, features, labels)[0].trainer)}
        with _no_layer_records():
            plain = trainer_epoch(_recipe_run(name, features, labels)[0].trainer)
        runs["norecords_cpu"] = plain["train_cpu"]
        best = {k: min(v, best.get(k, v)) for k, v in runs.items()}
        best["steps"] = steps
    return best


def overhead_report(models: list[str], features: Path, labels: Path | None, repeats: int,
                    profile: bool) -> None:
    """The Trainer-over-bare-loop table (step time: an epoch's time / its steps)."""
    print(f"\nTrainer vs bare loop on {features} (one thread, best of {repeats}; load average "
          f"{os.getloadavg()[0]:.1f}); ms per step, CPU (wall)")
    print("| model | steps | bare loop | Trainer training pass | ratio CPU (wall) "
          "| ratio CPU without per-layer records | Trainer epoch with validation "
          "| ratio CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in models:
        r = overhead(name, features, labels, repeats)
        ms = {k: 1000 * v / r["steps"] for k, v in r.items() if k != "steps"}
        print(f"| {name} | {r['steps']:.0f} | {ms['bare_cpu']:.1f} ({ms['bare_wall']:.1f}) "
              f"| {ms['train_cpu']:.1f} ({ms['train_wall']:.1f}) "
              f"| {r['train_cpu'] / r['bare_cpu']:.3f} ({r['train_wall'] / r['bare_wall']:.3f}) "
              f"| {r['norecords_cpu'] / r['bare_cpu']:.3f} "
              f"| {ms['epoch_cpu']:.1f} | {r['epoch_cpu'] / r['bare_cpu']:.3f} |", flush=True)
        if profile:
            _profile(name, features, labels)


def _profile(name: str, features: Path, labels: Path | None) -> None:
    """cProfile of one Trainer training pass: the 15 functions of most own time."""
    import cProfile
    import pstats

    trainer = _recipe_run(name, features, labels)[0].trainer
    phase, _ = trainer.phase_of(1)
    prof = cProfile.Profile()
    prof.runcall(trainer._train_epoch, phase)
    pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=list_models())
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per model")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--skip-data", action="store_true", help="no data-wait measurement")
    parser.add_argument("--clips", type=int, default=192, help="clips in the data-wait store")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the data-wait run")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (stage: 0)")
    parser.add_argument("--data-models", nargs="*", default=["cnn2d"])
    parser.add_argument("--gpu-models", nargs="*", default=["cnn2d", "resnet18"],
                        help="models timed on CUDA with and without AMP (when a GPU exists)")
    parser.add_argument("--gpu-batch", type=int, nargs="*", default=[BATCH, 256],
                        help="batch sizes of the CUDA fp32-vs-AMP runs")
    parser.add_argument("--overhead-models", nargs="*", default=["cnn1d", "crnn"],
                        help="models whose Trainer epoch is timed against a bare loop")
    parser.add_argument("--features", default=str(ROOT / "data/features"),
                        help="feature store of the overhead runs")
    parser.add_argument("--labels", default=str(ROOT / "data/clean/labels.csv"),
                        help="labels file of the overhead runs ('' for the store's)")
    parser.add_argument("--repeats", type=int, default=2, help="overhead: runs of each, best")
    parser.add_argument("--profile", action="store_true", help="overhead: cProfile a Trainer pass")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {args.threads} threads, batch {BATCH} x "
          f"({N_MELS} mels, {FRAMES} frames), {NUM_CLASSES} classes, AdamW + BCE, CPU")
    print(f"{'model':<20}{'parameters':>14}{'clips/s':>10}")
    for name in args.models:
        rate, n_params = throughput(name, args.seconds)
        print(f"{name:<20}{n_params:>14,}{rate:>10.1f}", flush=True)

    if torch.cuda.is_available():
        for batch in args.gpu_batch:
            gpu_report(args.gpu_models, args.seconds, batch)
    if args.overhead_models:
        overhead_report(args.overhead_models, Path(args.features),
                        Path(args.labels) if args.labels else None, args.repeats, args.profile)
    if args.skip_data:
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        store = build_store(Path(tmp), args.clips)
        print(f"\nstore: {args.clips} tone clips -> log-mel FeatureSet in "
              f"{time.perf_counter() - t0:.1f} s; {args.epochs} epochs, "
              f"num_workers={args.workers}")
        print(f"{'model':<20}{'data wait':>10}{'clips/s':>10}")
        for name in args.data_models:
            share, rate = data_wait_share(store, name, args.epochs, args.workers)
            print(f"{name:<20}{share:>10.1%}{rate:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
