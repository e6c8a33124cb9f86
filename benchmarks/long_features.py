"""Peak memory of a long recording through ``download``'s screening and ``features``.

    python benchmarks/long_features.py                 # a 2-hour 44.1 kHz stereo clip
    python benchmarks/long_features.py --hours 0.5

One generated WAV (noise, a tone in its middle minute; written in one-minute blocks to a
temporary folder, deleted after) is, each in a child process whose own peak RSS
(``ru_maxrss``) is printed: screened as ``download`` screens a source's clips
(:func:`audiotag.data.screen.screen_clips`, which reads every clip), and extracted by the
``features`` stage's code (:func:`audiotag.features.store.extract_features`, the default
``features`` settings, ``workers: 0`` so the clip is read in the measured process). The
audio-reading steps of ``download`` are that screening; the rest copies files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {src!r})
from pathlib import Path
import pandas as pd
from audiotag.data.config import SplitConfig
from audiotag.data.screen import screen_clips
from audiotag.features.config import FeaturesConfig
from audiotag.features.store import extract_features
folder = Path({folder!r})
m = pd.DataFrame([{{"clip_id": "long", "path": "long.wav", "labels": "a", "subset": "curated",
                   "fold": 1}}])
t = time.perf_counter()
if {step!r} == "download":
    out = screen_clips(m, folder, 0.0, progress=False)
    what = f"{{out['duration_s'].iloc[0] / 3600:.2f}} h kept"
else:
    extract_features(m, ["a"], folder, folder / "features", FeaturesConfig(workers=0),
                     SplitConfig(valid_fold=0))
    what = f"{{(folder / 'features' / 'curated.npy').stat().st_size / 2**20:.0f}} MiB of features"
print(json.dumps({{"seconds": time.perf_counter() - t, "what": what,
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def write_long(path: Path, hours: float, rate: int, channels: int, seed: int = 0) -> None:
    """``hours`` of noise with a 1 kHz tone in the middle minute, in one-minute blocks."""
    rng = np.random.default_rng(seed)
    minutes = max(1, round(hours * 60))
    with sf.SoundFile(path, "w", rate, channels, subtype="PCM_16") as f:
        for m in range(minutes):
            block = 0.05 * rng.standard_normal((60 * rate, channels))
            if m == minutes // 2:
                block += 0.3 * np.sin(2 * np.pi * 1000 * np.arange(60 * rate) / rate)[:, None]
            f.write(block.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--rate", type=int, default=44100)
    parser.add_argument("--channels", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_long(Path(tmp) / "long.wav", args.hours, args.rate, args.channels)
        print(f"one clip of {args.hours:g} h at {args.rate} Hz, {args.channels} channel(s)")
        for step in ("download", "features"):
            code = CHILD.format(src=str(ROOT / "src"), folder=tmp, step=step)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True)
            stats = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{step:<9} peak RSS {stats['peak_mib']:6.0f} MiB, {stats['seconds']:5.0f} s "
                  f"({stats['what']})")


if __name__ == "__main__":
    main()
