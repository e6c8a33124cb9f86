"""Feature extraction: throughput against a plain librosa loop, and peak memory vs clip count.

    python benchmarks/features.py                   # throughput + memory at 2,000 / 20,000
    python benchmarks/features.py --clips 300 --memory-sizes 2000

Throughput: the same clips (44.1 kHz 16-bit WAV, 4 s) go through this project's extractor
(``extract_features``: decode, resample to 32 kHz, 64-band log-mel, top_db, float16
memmap store, index and statistics; ``features.workers`` processes) and through a plain
librosa per-file loop (``librosa.load`` at 32 kHz -> ``melspectrogram`` -> ``power_to_db``
-> ``np.save`` per clip), in the same run. Both in seconds of audio per second of wall
time. Peak memory: a child process extracts N short clips (copies of a small generated set,
listed N times in a manifest); its own ru_maxrss and its workers' are reported. The last
line printed is the throughput ratio (ours / librosa).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from audiotag.data.config import SplitConfig  # noqa: E402
from audiotag.features.config import FeaturesConfig  # noqa: E402
from audiotag.features.store import extract_features  # noqa: E402

SOURCE_SR = 44100
TARGET_SR = 32000
N_MELS = 64
N_FFT = 1024
HOP = 320


def generate(folder: Path, n: int, seconds: float, seed: int = 0) -> list[Path]:
    """``n`` distinct clips (tones + noise bursts), written once and reused."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    t = np.arange(int(seconds * SOURCE_SR)) / SOURCE_SR
    for i in range(n):
        path = folder / f"clip{i:05d}.wav"
        if not path.exists():
            wave = 0.05 * rng.standard_normal(len(t))
            for _ in range(3):
                wave += 0.2 * np.sin(2 * np.pi * rng.uniform(100, 8000) * t)
            sf.write(path, (wave / np.abs(wave).max() * 0.9).astype(np.float32), SOURCE_SR,
                     subtype="PCM_16")
        paths.append(path)
    return paths


def manifest_of(paths: list[Path], copies: int = 1) -> pd.DataFrame:
    rows = []
    for k in range(copies):
        for i, path in enumerate(paths):
            n = k * len(paths) + i
            subset = ("curated", "noisy", "test")[n % 3]
            rows.append({"clip_id": f"c{n:06d}", "path": str(path), "labels": "a",
                         "subset": subset, "fold": -1 if subset == "test" else n % 5})
    return pd.DataFrame(rows)


def config(workers: int, seconds: float) -> FeaturesConfig:
    return FeaturesConfig(kind="logmel", sample_rate=TARGET_SR, n_fft=N_FFT, hop_length=HOP,
                          n_mels=N_MELS, fmin=20.0, fmax=TARGET_SR / 2, clip_seconds=seconds,
                          workers=workers)


def ours(paths: list[Path], out: Path, workers: int, seconds: float) -> float:
    started = time.perf_counter()
    extract_features(manifest_of(paths), ["a"], out.parent, out, config(workers, seconds),
                     SplitConfig(valid_fold=0))
    return time.perf_counter() - started


def librosa_loop(paths: list[Path], out: Path) -> float:
    import librosa

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for path in paths:
        y, _ = librosa.load(path, sr=TARGET_SR, mono=True)
        mel = librosa.feature.melspectrogram(y=y, sr=TARGET_SR, n_fft=N_FFT, hop_length=HOP,
                                             n_mels=N_MELS)
        np.save(out / f"{path.stem}.npy", librosa.power_to_db(mel, top_db=80.0))
    return time.perf_counter() - started


def peak_memory(paths: list[Path], n_clips: int, out: Path, workers: int, seconds: float) -> dict:
    """Extract ``n_clips`` (the set repeated) in a child process; its peak RSS in MiB."""
    copies = -(-n_clips // len(paths))
    manifest = manifest_of(paths, copies).iloc[:n_clips]
    manifest_path = out.parent / f"manifest{n_clips}.pkl"
    manifest.to_pickle(manifest_path)
    code = f"""
import json, resource, sys, time
sys.path.insert(0, {str(ROOT / 'src')!r})
import pandas as pd
from pathlib import Path
from audiotag.data.config import SplitConfig
from audiotag.features.config import FeaturesConfig
from audiotag.features.store import extract_features
m = pd.read_pickle({str(manifest_path)!r})
cfg = FeaturesConfig.model_validate_json({config(workers, seconds).model_dump_json()!r})
t = time.perf_counter()
extract_features(m, ["a"], Path({str(out.parent)!r}), Path({str(out)!r}), cfg,
                 SplitConfig(valid_fold=0))
print(json.dumps({{"seconds": time.perf_counter() - t,
    "parent_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    stats["store_mib"] = sum(f.stat().st_size for f in out.iterdir()) / 2**20
    stats["clips"] = n_clips
    shutil.rmtree(out)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=300, help="clips for the throughput run")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of those clips")
    parser.add_argument("--workers", type=int, default=2, help="features.workers")
    parser.add_argument("--memory-sizes", type=int, nargs="*", default=[2000, 20000])
    parser.add_argument("--memory-seconds", type=float, default=0.5,
                        help="length of the (repeated) clips of the memory runs")
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "audiotag-bench")
    args = parser.parse_args()

    print(f"load average before: {os.getloadavg()}  cpus: {os.cpu_count()}")
    paths = generate(args.cache / f"clips{args.seconds:g}s", args.clips, args.seconds)
    audio_seconds = args.clips * args.seconds
    work = Path(tempfile.mkdtemp(prefix="featbench-"))
    try:
        ours(paths[:8], work / "warm", args.workers, args.seconds)  # page cache, imports
        librosa_loop(paths[:8], work / "warm_librosa")
        t_librosa = librosa_loop(paths, work / "librosa")
        t_ours = ours(paths, work / "ours", args.workers, args.seconds)
        t_one = ours(paths, work / "ours1", 0, args.seconds)
        print(f"clips: {args.clips} x {args.seconds:g} s at {SOURCE_SR} Hz -> {TARGET_SR} Hz, "
              f"{N_MELS} mels, n_fft {N_FFT}, hop {HOP}")
        print(f"librosa loop      : {t_librosa:7.2f} s  {audio_seconds / t_librosa:8.0f} "
              "x real time")
        print(f"ours, {args.workers} workers   : {t_ours:7.2f} s  {audio_seconds / t_ours:8.0f} "
              "x real time")
        print(f"ours, in-process  : {t_one:7.2f} s  {audio_seconds / t_one:8.0f} x real time")
        short = generate(args.cache / f"clips{args.memory_seconds:g}s", 200, args.memory_seconds)
        for n in args.memory_sizes:
            mem = peak_memory(short, n, work / f"mem{n}", args.workers, args.memory_seconds)
            print(f"peak memory, {n:6d} clips: parent {mem['parent_mib']:6.0f} MiB, "
                  f"largest worker {mem['worker_mib']:6.0f} MiB, store {mem['store_mib']:5.0f} "
                  f"MiB, {mem['seconds']:.1f} s")
        print(f"load average after: {os.getloadavg()}")
        print(f"ratio ours/librosa: {t_librosa / t_ours:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
