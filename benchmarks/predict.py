"""End-to-end inference speed: what ``audiotag predict`` costs per clip, against the
forward pass alone (what ``inference_ms_per_clip`` of the evaluate stage times).

    python benchmarks/predict.py                        # the default models, 2 threads
    python benchmarks/predict.py --models cnn2d --clips 200 --threads 2 --device cuda

Clips: ``--clips`` WAV files of 1-10 s (uniform; mean 5.5 s), 44.1 kHz stereo, so every
step the pipeline does is paid: decode, downmix, resample to ``features.sample_rate``, pad,
features, windows, normalisation. Models: each of ``train.models`` built from params.yaml
(``models.<name>``, random weights: speed does not depend on them) on the default
``features`` settings. For each model:

- end to end: :func:`audiotag.windows.predict_windows` over the files (screening,
  decoding in this process, ``--workers`` 0, every window of a file: as ``audiotag
  predict`` by default);
- forward alone: the same windows, already in memory, through the same batched forward.

Reported: clips/s, x real time (seconds of audio per second of wall time), the CPU time of
this process (user + system, all threads) per clip, and the hours of audio tagged in a
120-minute budget at that speed (x real time x 2 h). The machine is shared: wall figures are
lower bounds (each figure is the fastest of ``--repeat`` runs); CPU time per clip is the
steadier figure. Prints figures only.

Long recordings (``--long HOURS``): one generated WAV of that length (noise, with a tone
only in its middle; ``--long-rate``/``--long-channels``, default 44.1 kHz stereo), written
in blocks to a temporary folder and deleted after:

- peak memory: ``audiotag predict``'s path (:func:`predict_windows`, ``--model``, random
  weights) on it in a child process, whose own peak RSS (``ru_maxrss``) is printed, with
  the same for a file of ``--long-ref`` hours (the ratio shows whether memory grows with
  length);
- speed: per model, hours of audio scored per minute end to end, the front end alone
  (decode, resample, features, windows) and the same windows (already in memory) through
  a bare ``torch.inference_mode()`` loop of the model, in the same run. End to end over
  the bare loop is what decoding, features and our code cost; end to end over front end +
  bare loop is what our code adds (screening, batching, the timeline).

    python benchmarks/predict.py --long 1                       # 1 h of 44.1 kHz stereo
    python benchmarks/predict.py --long 10 --long-ref 1 --long-rate 16000 --long-channels 1 \
        --models cnn1d --no-speed
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from audiotag.features.config import FeaturesConfig  # noqa: E402
from audiotag.features.frontend import feature_dim  # noqa: E402
from audiotag.features.store import ClipPipeline, Item, collate_clips  # noqa: E402
from audiotag.models import create_model, parse_model_params  # noqa: E402
from audiotag.predict import MIN_SECONDS  # noqa: E402
from audiotag.training.inference import predict, task_of  # noqa: E402
from audiotag.windows import (  # noqa: E402
    AudioWindows,
    file_starts,
    hop_frames,
    long_file_windows,
    predict_windows,
)

BUDGET_HOURS = 2.0  # the English lab log's 120-minute inference budget
NUM_CLASSES = 12


def write_clips(folder: Path, n: int, seed: int = 0) -> tuple[list[Path], float]:
    """``n`` noisy-tone WAVs of 1-10 s at 44.1 kHz stereo; returns (paths, total seconds)."""
    rng = np.random.default_rng(seed)
    paths, total = [], 0.0
    for i in range(n):
        seconds = float(rng.uniform(1.0, 10.0))
        t = np.arange(int(seconds * 44100)) / 44100
        wave = 0.1 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 440 * (1 + i % 7) * t)
        path = folder / f"clip_{i:04d}.wav"
        sf.write(path, np.stack([wave, wave[::-1]], axis=1).astype(np.float32), 44100,
                 subtype="PCM_16")
        paths.append(path)
        total += seconds
    return paths, total


def checkpoint_meta(name: str, params: dict, features: FeaturesConfig) -> dict:
    dim = feature_dim(features)
    return {"model_name": name, "model_params": params, "num_classes": NUM_CLASSES,
            "n_mels": dim, "task": "multilabel", "single_label": False,
            "classes": [f"class_{i}" for i in range(NUM_CLASSES)], "targets": [],
            "features": features.model_dump(),
            "stats": {"shift": [0.0] * dim, "scale": [1.0] * dim}}


def _timed(fn, repeat: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of the fastest of ``repeat`` runs of
    ``fn()`` (the least disturbed by other jobs on a shared machine)."""
    runs = []
    for _ in range(repeat):
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


def budget_figures(n_clips: int, audio_s: float, wall: float, cpu: float,
                   budget_hours: float = BUDGET_HOURS) -> dict[str, float]:
    """A timing as the table reports it: clips/s, x real time (seconds of audio per second
    of wall time), CPU ms per clip, and the hours of audio tagged in ``budget_hours`` of
    inference at that speed (x real time x budget): the English log's 120-minute limit."""
    real_time = audio_s / wall
    return {"clips/s": n_clips / wall, "x real time": real_time,
            "CPU ms/clip": 1000 * cpu / n_clips, "audio hours in budget": real_time * budget_hours}


def bench_model(name: str, params: dict, features: FeaturesConfig, paths: list[Path],
                batch: int, device: torch.device, workers: int,
                repeat: int) -> dict[str, tuple[float, float]]:
    meta = checkpoint_meta(name, params, features)
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, n_mels=meta["n_mels"], **params)
    model = model.to(device).eval()
    predict_windows(model, meta, paths[:batch], None, MIN_SECONDS, batch, device,
                    progress=False)  # warm-up
    end_to_end = _timed(lambda: predict_windows(model, meta, paths, None, MIN_SECONDS, batch,
                                                device, workers, progress=False), repeat)
    pipeline = ClipPipeline(meta["features"], meta["stats"])
    files = AudioWindows([str(p) for p in paths], pipeline, hop_frames(pipeline, None),
                         MIN_SECONDS)
    inputs = [x for i in range(len(files)) for x in files[i][1].x]  # every window, (dim, T)
    batches = [collate_clips([Item(x, torch.zeros(0), torch.tensor(1.0))
                              for x in inputs[i:i + batch]]) for i in range(0, len(inputs), batch)]
    spec = task_of(meta)

    def forward() -> None:
        predict(model, batches, device, spec=spec)
        if device.type == "cuda":
            torch.cuda.synchronize()

    forward()  # warm-up
    return {"end to end": end_to_end, "forward only": _timed(forward, repeat)}


def write_long(path: Path, hours: float, rate: int, channels: int, seed: int = 0) -> None:
    """A WAV of ``hours`` of noise with a 1 kHz tone in the middle minute, written in
    one-minute blocks (never whole in memory)."""
    rng = np.random.default_rng(seed)
    minutes = max(1, round(hours * 60))
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16") as f:
        for m in range(minutes):
            block = 0.05 * rng.standard_normal((60 * rate, channels))
            if m == minutes // 2:
                t = np.arange(60 * rate) / rate
                block += 0.3 * np.sin(2 * np.pi * 1000 * t)[:, None]
            f.write(block.astype(np.float32))


def long_peak(path: Path, name: str, params: dict, features: FeaturesConfig, batch: int,
              threads: int) -> dict:
    """Peak RSS (MiB) and seconds of :func:`predict_windows` on ``path`` in a child."""
    meta = checkpoint_meta(name, params, features)
    code = f"""
import json, resource, sys, time
sys.path.insert(0, {str(ROOT / 'src')!r})
import torch
from audiotag.models import create_model
from audiotag.windows import predict_windows
torch.set_num_threads({threads})
meta = json.loads({json.dumps(meta)!r})
model = create_model(meta["model_name"], num_classes=meta["num_classes"], n_mels=meta["n_mels"],
                     **meta["model_params"]).eval()
t = time.perf_counter()
pred = predict_windows(model, meta, [{str(path)!r}], None, 0.1, {batch}, torch.device("cpu"),
                       progress=False)
print(json.dumps({{"seconds": time.perf_counter() - t, "windows": len(pred.timeline),
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def long_speed(path: Path, hours: float, name: str, params: dict, features: FeaturesConfig,
               batch: int) -> dict[str, float]:
    """Hours of audio per minute of: ``predict_windows`` end to end; the front end alone
    (decode, resample, features, windows: :func:`long_file_windows`, no screening); a bare
    ``torch.inference_mode()`` forward loop on those windows."""
    meta = checkpoint_meta(name, params, features)
    torch.manual_seed(0)
    model = create_model(name, num_classes=NUM_CLASSES, n_mels=meta["n_mels"], **params).eval()
    started = time.perf_counter()
    pred = predict_windows(model, meta, [path], None, MIN_SECONDS, batch, torch.device("cpu"),
                           progress=False)
    end_to_end = time.perf_counter() - started
    pipeline = ClipPipeline(meta["features"], meta["stats"])
    length = int(round(pred.timeline["start_s"].iloc[-1]
                       * features.sample_rate / features.hop_length)) + pipeline.window
    starts = file_starts(length, pipeline.window, pipeline.n_crops, hop_frames(pipeline, None))
    started = time.perf_counter()
    windows = list(long_file_windows(str(path), pipeline, starts))
    front = time.perf_counter() - started
    assert len(windows) == len(pred.timeline), (len(windows), len(pred.timeline))
    started = time.perf_counter()
    with torch.inference_mode():
        for at in range(0, len(windows), batch):
            torch.sigmoid(model(torch.stack(windows[at:at + batch])))
    bare = time.perf_counter() - started
    return {k: 60 * hours / v for k, v in
            (("end to end", end_to_end), ("front end", front), ("bare loop", bare),
             ("front end + bare loop", front + bare))}


def run_long(args: argparse.Namespace, params: dict, features: FeaturesConfig,
             models: list[str]) -> None:
    print(f"long files: {args.long:g} h (and {args.long_ref:g} h) at {args.long_rate} Hz, "
          f"{args.long_channels} channel(s); {args.threads} thread(s), batch "
          f"{args.batch_size}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        for hours in sorted({args.long, args.long_ref} - {0.0}):
            path = Path(tmp) / f"long{hours:g}h.wav"
            write_long(path, hours, args.long_rate, args.long_channels)
            peak = long_peak(path, models[0], parse_model_params(params, models[0]), features,
                             args.batch_size, args.threads)
            print(f"{hours:g} h, {models[0]}: peak RSS {peak['peak_mib']:.0f} MiB, "
                  f"{peak['windows']} windows, {peak['seconds']:.0f} s")
            if args.speed and hours == args.long:
                for name in models:
                    rate = long_speed(path, hours, name, parse_model_params(params, name),
                                      features, args.batch_size)
                    print(f"{name:<8} h of audio per minute: " + ", ".join(
                        f"{k} {v:.2f}" for k, v in rate.items())
                        + f"; bare loop / end to end {rate['bare loop'] / rate['end to end']:.2f}"
                        f", (front end + bare loop) / end to end "
                        f"{rate['front end + bare loop'] / rate['end to end']:.2f}")
            path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--models", nargs="*", default=None, help="default: train.models")
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cores)")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--long", type=float, default=0.0, help="hours of one long file")
    parser.add_argument("--long-ref", type=float, default=0.0,
                        help="hours of a second long file, for the memory ratio")
    parser.add_argument("--long-rate", type=int, default=44100)
    parser.add_argument("--long-channels", type=int, default=2)
    parser.add_argument("--no-speed", dest="speed", action="store_false",
                        help="long files: peak memory only")
    args = parser.parse_args()
    params = yaml.safe_load(Path(args.params).read_text())
    features = FeaturesConfig.model_validate(params["features"])
    models = args.models or params["train"]["models"]
    torch.set_num_threads(args.threads)
    if args.long:
        run_long(args, params, features, models)
        return
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        paths, audio_s = write_clips(Path(tmp), args.clips)
        print(f"{args.clips} clips, {audio_s / 60:.1f} min of 44.1 kHz stereo audio; "
              f"features {features.kind} {features.sample_rate} Hz, "
              f"{features.clip_seconds} s window, eval_crops {features.eval_crops}; "
              f"{args.threads} thread(s), device {device}, batch {args.batch_size}, "
              f"best of {args.repeat}, "
              f"{os.cpu_count()} CPU(s) on the machine")
        print(f"{'model':<10} {'what':<13} {'clips/s':>8} {'x real time':>12} "
              f"{'CPU ms/clip':>12} {'h of audio / 120 min':>21}")
        for name in models:
            timings = bench_model(name, parse_model_params(params, name), features, paths,
                                  args.batch_size, device, args.workers, args.repeat)
            for what, (wall, cpu) in timings.items():
                f = budget_figures(len(paths), audio_s, wall, cpu)
                print(f"{name:<10} {what:<13} {f['clips/s']:8.1f} {f['x real time']:12.1f} "
                      f"{f['CPU ms/clip']:12.1f} {f['audio hours in budget']:21.0f}")


if __name__ == "__main__":
    main()
