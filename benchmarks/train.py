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
Prints figures only; nothing is asserted about time.
"""

from __future__ import annotations

import argparse
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
