"""Tiny generated fixtures shared by tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from audiotag.data.manifest import write_manifest
from audiotag.features.config import FeaturesConfig
from audiotag.training.config import TrainConfig

CLASSES = ["low", "mid", "high"]
# the tone clips' small front end and a short cnn1d training: what the training tests share
TONE_FEATURES = FeaturesConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, fmin=50,
                               fmax=4000, clip_seconds=1.0, eval_crops="center")
TONE_TRAIN = TrainConfig(models=["cnn1d"], epochs=3, batch_size=8, lr=0.01, patience=5,
                         device="cpu")
SMALL_CNN1D = {"channels": [16, 16]}
FREQS = {"low": 300.0, "mid": 1200.0, "high": 3000.0}


def tone_clip(labels: list[str], seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.01 * rng.standard_normal(len(t))
    for name in labels:
        wave += 0.3 * np.sin(2 * np.pi * FREQS[name] * t + rng.uniform(0, 6))
    return (wave / max(1.0, np.abs(wave).max())).astype(np.float32)


def write_tone_dataset(root: Path, counts=(("curated", 12), ("noisy", 8), ("test", 6)),
                       sr: int = 8000, seed: int = 0, single_label: bool = False,
                       targets: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """A manifest directory of sine-tone clips (0.5-1.5 s) labelled by their tones (one
    tone each with ``single_label``); ``targets`` adds regression columns
    ``targets_n_tones`` and ``targets_seconds`` (the clip's duration)."""
    rng = np.random.default_rng(seed)
    rows = []
    (root / "audio").mkdir(parents=True, exist_ok=True)
    for subset, n in counts:
        for i in range(n):
            size = 1 if single_label else rng.integers(1, 3)
            labels = sorted(rng.choice(CLASSES, size=size, replace=False), key=CLASSES.index)
            seconds = float(rng.uniform(0.5, 1.5))
            clip_id = f"{subset}_{i:03d}"
            sf.write(root / "audio" / f"{clip_id}.wav", tone_clip(labels, seconds, sr, rng), sr,
                     subtype="PCM_16")
            rows.append({"clip_id": clip_id, "path": f"audio/{clip_id}.wav",
                         "labels": ";".join(labels), "subset": subset,
                         "fold": -1 if subset == "test" else i % 3,
                         "duration_s": seconds, "sample_rate": sr,
                         **({"targets_n_tones": len(labels), "targets_seconds": seconds}
                            if targets else {})})
    df = pd.DataFrame(rows)
    write_manifest(df, CLASSES, root)
    return df, CLASSES


def tone_store(root: Path, features=None, **kwargs) -> Path:
    """A feature store of :func:`write_tone_dataset` clips (24 curated, 12 noisy, 9 test)
    under ``root``: the training tests' small data."""
    from audiotag.data.config import SplitConfig
    from audiotag.data.manifest import read_manifest
    from audiotag.features.store import extract_features

    features = features or TONE_FEATURES
    write_tone_dataset(root / "raw", counts=(("curated", 24), ("noisy", 12), ("test", 9)),
                       **kwargs)
    manifest, classes = read_manifest(root / "raw")
    extract_features(manifest, classes, root / "raw", root / "features", features,
                     SplitConfig(valid_fold=0))
    return root / "features"


class Killed(Exception):
    """A training run killed by :func:`killed_after`."""


@contextmanager
def killed_after(epochs: int) -> Iterator[None]:
    """Training runs inside stop (raise :class:`Killed`) right after they save the resume
    state of epoch ``epochs``: a run killed between two epochs, as a test sees one."""
    import pytest

    from audiotag.training import resume

    save = resume.save_state

    def save_then_kill(directory, fp, state, complete=False):
        save(directory, fp, state, complete)
        if not complete and len(state["history"]) >= epochs:
            raise Killed(f"killed after epoch {epochs}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resume, "save_state", save_then_kill)
        yield
