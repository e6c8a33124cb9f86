"""Tests of the embedded synthetic dataset (tiny configs, written to tmp_path)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from pydantic import ValidationError

from audiotag.data.manifest import split_labels, validate_manifest
from audiotag.data.synthetic import (
    EVENT_CLASSES,
    EVENT_MAX_SECONDS,
    EVENT_MIN_SECONDS,
    LOOKALIKE,
    RELATED,
    SyntheticConfig,
    generate,
    render_event,
)

TINY = dict(num_classes=6, n_curated=10, n_noisy=20, n_test=8, sample_rate=8000,
            min_seconds=1.0, max_seconds=2.0, max_events=3, n_folds=3)
NO_NOISE = dict(missing_rate=0.0, confusion_rate=0.0, open_set_rate=0.0, random_rate=0.0)


def _tiny(**overrides: object) -> SyntheticConfig:
    """The tiny test config with some fields replaced."""
    return SyntheticConfig(**{**TINY, **overrides})


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[SyntheticConfig, Path,
                                                                 pd.DataFrame, list[str]]:
    cfg = _tiny()
    out = tmp_path_factory.mktemp("synthetic")
    df, classes = generate(cfg, out, seed=7)
    return cfg, out, df, classes


def _wav_bytes(out: Path, df: pd.DataFrame) -> dict[str, bytes]:
    """Raw bytes of every clip file, keyed by manifest path."""
    return {p: (out / p).read_bytes() for p in df["path"]}


def test_same_seed_is_byte_identical(tiny_set, tmp_path: Path) -> None:
    cfg, out, df, classes = tiny_set
    df2, classes2 = generate(cfg, tmp_path, seed=7)
    pd.testing.assert_frame_equal(df, df2)
    assert classes == classes2
    assert _wav_bytes(out, df) == _wav_bytes(tmp_path, df2)


def test_different_seed_gives_different_audio(tiny_set, tmp_path: Path) -> None:
    cfg, out, df, _ = tiny_set
    df2, _ = generate(cfg, tmp_path, seed=8)
    a, b = _wav_bytes(out, df), _wav_bytes(tmp_path, df2)
    assert all(a[p] != b[p] for p in a)


def test_clip_audio_does_not_depend_on_other_subsets(tmp_path: Path) -> None:
    df_a, _ = generate(_tiny(n_curated=2, n_noisy=3, n_test=2), tmp_path / "a", seed=3)
    df_b, _ = generate(_tiny(n_curated=5, n_noisy=3, n_test=2), tmp_path / "b", seed=3)
    for clip in ("noi_00002", "tst_00001", "cur_00001"):
        path = f"audio/{clip}.wav"
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    assert list(df_a["clip_id"]) == [c for c in df_b["clip_id"] if c not in
                                     ("cur_00002", "cur_00003", "cur_00004")]


def test_manifest_contract(tiny_set) -> None:
    cfg, _, df, classes = tiny_set
    validate_manifest(df, classes)
    assert classes == list(EVENT_CLASSES[: cfg.num_classes])
    assert df["subset"].value_counts().to_dict() == {"curated": 10, "noisy": 20, "test": 8}
    prefixes = {"curated": "cur", "noisy": "noi", "test": "tst"}
    for row in df.itertuples():
        assert re.fullmatch(rf"{prefixes[row.subset]}_\d{{5}}", row.clip_id)
        assert row.path == f"audio/{row.clip_id}.wav"
    assert df["clip_id"].is_unique
    assert df["sample_rate"].dtype.kind == "i" and (df["sample_rate"] == cfg.sample_rate).all()
    assert df["fold"].dtype.kind == "i"


def test_folds_are_balanced(tiny_set) -> None:
    cfg, _, df, _ = tiny_set
    assert (df.loc[df["subset"] == "test", "fold"] == -1).all()
    for subset in ("curated", "noisy"):
        counts = df.loc[df["subset"] == subset, "fold"].value_counts()
        assert set(counts.index) == set(range(cfg.n_folds))
        assert counts.max() - counts.min() <= 1


def test_audio_files(tiny_set) -> None:
    cfg, out, df, _ = tiny_set
    for row in df.itertuples():
        info = sf.info(out / row.path)
        assert (info.channels, info.samplerate, info.subtype, info.format) == (
            1, cfg.sample_rate, "PCM_16", "WAV")
        audio, sr = sf.read(out / row.path)
        assert audio.ndim == 1 and sr == cfg.sample_rate
        assert row.duration_s == pytest.approx(len(audio) / sr, abs=1e-12)
        assert cfg.min_seconds <= row.duration_s <= cfg.max_seconds
        assert np.isfinite(audio).all()
        assert 0.25 <= np.max(np.abs(audio)) <= 1.0
        assert np.sqrt(np.mean(audio**2)) > 1e-3


@pytest.mark.parametrize("random_rate", [0.0, 0.1, 0.37, 1.0])
def test_random_label_noise_rate(tmp_path: Path, random_rate: float) -> None:
    cfg = _tiny(n_curated=3, n_noisy=50, n_test=3, min_seconds=0.3, max_seconds=0.4,
                sample_rate=4000, **{**NO_NOISE, "random_rate": random_rate})
    df, classes = generate(cfg, tmp_path, seed=11)
    validate_manifest(df, classes)
    noisy = df[df["subset"] == "noisy"]
    changed = noisy["labels"] != noisy["true_labels"]
    assert changed.mean() == round(random_rate * cfg.n_noisy) / cfg.n_noisy
    # a corrupted clip's label *set* differs (strings are in class order, so compare sets too)
    for labels, true in zip(noisy["labels"][changed], noisy["true_labels"][changed], strict=True):
        assert set(split_labels(labels)) != set(split_labels(true))
        assert len(split_labels(labels)) >= 1


@pytest.fixture(scope="module")
def noise_kinds(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """100 noisy clips of 12 classes with each noise kind at a known share."""
    cfg = SyntheticConfig(num_classes=12, n_curated=2, n_noisy=100, n_test=2, sample_rate=8000,
                          min_seconds=0.5, max_seconds=1.0, missing_rate=0.2,
                          confusion_rate=0.1, open_set_rate=0.25, random_rate=0.05)
    df, classes = generate(cfg, tmp_path_factory.mktemp("kinds"), seed=3)
    validate_manifest(df, classes)
    return df[df["subset"] == "noisy"]


def _sets(row: pd.Series) -> tuple[set[str], set[str]]:
    return set(split_labels(row["labels"])), set(split_labels(row["true_labels"]))


def test_noise_kinds_hit_their_share_of_noisy_clips(noise_kinds: pd.DataFrame) -> None:
    """Each kind edits labels its own way; together they hit exactly the sum of the shares
    (disjoint clips): missing = a true label absent, confusion = a RELATED pair swapped,
    open set = a label added that the truth lacks (the clip's sound was out of vocabulary)."""
    kinds = {"missing": 0, "confusion": 0, "extra": 0, "other": 0}
    related = set(RELATED.items())
    for _, row in noise_kinds.iterrows():
        given, true = _sets(row)
        if given == true:
            continue
        lost, added = true - given, given - true
        if lost and not added:
            kinds["missing"] += 1
        elif len(lost) == len(added) == 1 and (next(iter(lost)), next(iter(added))) in related:
            kinds["confusion"] += 1
        elif added and not lost:
            kinds["extra"] += 1
        else:
            kinds["other"] += 1
    assert sum(kinds.values()) == 20 + 10 + 25 + 5
    # the random kind (5 clips) drops, swaps or adds: it may look like any of the others
    assert 20 <= kinds["missing"] <= 25 and 10 <= kinds["confusion"] <= 15
    assert 25 <= kinds["extra"] <= 30 and kinds["other"] <= 5


def test_open_set_clips_carry_the_label_of_the_sound_they_resemble(
        noise_kinds: pd.DataFrame) -> None:
    """An open-set clip's extra label is the LOOKALIKE of an out-of-vocabulary kind; its
    truth may be empty (the clip held one event, outside the vocabulary)."""
    extra = [given - true for given, true in map(_sets, (r for _, r in noise_kinds.iterrows()))
             if given - true and not true - given]
    carried = [label for labels in extra for label in labels]
    assert set(carried) <= set(LOOKALIKE.values()) | set(EVENT_CLASSES[:12])
    assert sum(label in LOOKALIKE.values() for label in carried) >= 20
    assert (noise_kinds["true_labels"] == "").any()


def test_the_noisy_subset_is_recorded_differently(tmp_path: Path) -> None:
    """Domain shift: with noisy_lowpass_hz the noisy clips hold almost no energy above it;
    curated clips do; noisy_snr_offset_db lowers the noisy clips' SNR target by that much."""
    cfg = _tiny(n_curated=6, n_noisy=6, n_test=1, sample_rate=16000, **NO_NOISE,
                noisy_lowpass_hz=2000.0, noisy_snr_offset_db=-10.0)
    df, _ = generate(cfg, tmp_path, seed=5)

    def high_share(path: str) -> float:
        audio, sr = sf.read(tmp_path / path)
        power = np.abs(np.fft.rfft(audio)) ** 2
        return power[np.fft.rfftfreq(len(audio), 1 / sr) > 3000].sum() / power.sum()

    shares = df.assign(high=df["path"].map(high_share)).groupby("subset")["high"].max()
    assert shares["noisy"] < 1e-3 < shares["curated"]
    snr = df.groupby("subset")["targets_snr_db"].mean()
    assert snr["noisy"] < snr["curated"] - 3


def test_noise_kind_shares_are_checked() -> None:
    with pytest.raises(ValidationError, match="add up to 1.2 > 1"):
        SyntheticConfig(missing_rate=0.5, confusion_rate=0.3, open_set_rate=0.4, random_rate=0)
    with pytest.raises(ValidationError, match="needs event kinds outside the vocabulary"):
        SyntheticConfig(num_classes=len(EVENT_CLASSES), max_events=3, open_set_rate=0.1)


def test_labels_clean_outside_noisy_and_in_class_order(tiny_set) -> None:
    cfg, _, df, classes = tiny_set
    clean = df[df["subset"] != "noisy"]
    assert (clean["labels"] == clean["true_labels"]).all()
    order = {name: i for i, name in enumerate(classes)}
    for column in ("labels", "true_labels"):
        for value in df[column]:
            idx = [order[name] for name in split_labels(value)]
            assert idx == sorted(set(idx))
    counts = df.loc[df["subset"] != "noisy", "true_labels"].map(lambda v: len(split_labels(v)))
    assert counts.between(1, cfg.max_events).all()


def test_max_events_equal_to_num_classes_and_full_noise(tmp_path: Path) -> None:
    # every clip may hold every class: corruption must still change the label set
    cfg = _tiny(num_classes=2, max_events=2, n_curated=2, n_noisy=20, n_test=2,
                **{**NO_NOISE, "random_rate": 1.0}, min_seconds=0.3, max_seconds=0.3,
                sample_rate=4000)
    df, classes = generate(cfg, tmp_path, seed=0)
    validate_manifest(df, classes)
    noisy = df[df["subset"] == "noisy"]
    assert (noisy["labels"] != noisy["true_labels"]).all()


def test_progress_bar_runs(tmp_path: Path) -> None:
    df, _ = generate(_tiny(n_curated=1, n_noisy=0, n_test=1, max_seconds=1.0), tmp_path,
                     seed=0, progress=True)
    assert len(df) == 2


def test_event_classes() -> None:
    assert len(EVENT_CLASSES) >= 16
    assert len(set(EVENT_CLASSES)) == len(EVENT_CLASSES)
    assert all(re.fullmatch(r"[a-z_]+", name) for name in EVENT_CLASSES)
    with pytest.raises(ValueError, match="unknown event kind"):
        render_event("theremin", 8000, np.random.default_rng(0))


@pytest.mark.parametrize("sr", [4000, 16000])
@pytest.mark.parametrize("kind", EVENT_CLASSES)
def test_render_event(kind: str, sr: int) -> None:
    for seed in range(3):
        x = render_event(kind, sr, np.random.default_rng([seed, sr]))
        assert x.ndim == 1 and np.isfinite(x).all()
        assert EVENT_MIN_SECONDS * sr <= len(x) <= EVENT_MAX_SECONDS * sr
        assert np.max(np.abs(x)) == pytest.approx(1.0)
        assert np.sqrt(np.mean(x**2)) > 0.01
        # no aliasing: (almost) no energy in the top of the band
        power = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / sr)
        assert power[freqs > 0.475 * sr].sum() < 0.01 * power.sum()


def _summary(x: np.ndarray, sr: int) -> np.ndarray:
    """Crude per-event features: log band energies plus temporal/spectral variability."""
    frames = x[: len(x) // 256 * 256].reshape(-1, 256) * np.hanning(256)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-10
    freqs = np.fft.rfftfreq(256, 1 / sr)
    edges = np.geomspace(60, sr / 2, 13)
    bands = np.stack([power[:, (freqs >= a) & (freqs < b)].sum(1) + 1e-10
                      for a, b in zip(edges[:-1], edges[1:], strict=True)])
    spectrum = np.log(bands.mean(1))
    loudness = np.log(power.sum(1))
    centroid = (power * freqs).sum(1) / power.sum(1)
    flatness = np.exp(np.log(power).mean(1)) / power.mean(1)
    extra = [loudness.std() / 5, np.abs(np.diff(loudness)).mean() / 5,
             centroid.std() / 500, flatness.mean() * 5]
    return np.concatenate([(spectrum - spectrum.max()) / 10, extra])


def test_event_kinds_are_distinguishable_but_not_identical() -> None:
    """A nearest-centroid classifier on crude features beats chance by a wide margin."""
    sr, per_class = 8000, 12
    feats, kinds = [], []
    for k, kind in enumerate(EVENT_CLASSES):
        for seed in range(per_class):
            feats.append(_summary(render_event(kind, sr, np.random.default_rng([seed, k])), sr))
            kinds.append(k)
    x, y = np.array(feats), np.array(kinds)
    train = np.arange(len(y)) % per_class < per_class // 2
    centroids = np.stack([x[train & (y == k)].mean(0) for k in range(len(EVENT_CLASSES))])
    # every kind has its own average time-frequency shape
    gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
    assert gaps[~np.eye(len(centroids), dtype=bool)].min() > 0.2
    pred = np.linalg.norm(x[~train][:, None] - centroids[None], axis=-1).argmin(1)
    accuracy = (pred == y[~train]).mean()
    assert accuracy > 5 / len(EVENT_CLASSES)


@pytest.mark.parametrize("bad", [
    {"min_seconds": 3.0, "max_seconds": 2.0},
    {"num_classes": len(EVENT_CLASSES) + 1},
    {"n_curatd": 10},
    {"max_events": 5, "num_classes": 4},
    {"snr_db_min": 10.0, "snr_db_max": 5.0},
    {"random_rate": 1.5},
    {"noisy_lowpass_hz": 0.0},
    {"n_curated": 0},
    {"sample_rate": 2000},
    {"min_seconds": 0.0},
])
def test_config_validation(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        SyntheticConfig(**bad)


def test_config_defaults_and_frozen() -> None:
    cfg = SyntheticConfig()
    assert (cfg.num_classes, cfg.n_curated, cfg.n_noisy, cfg.n_test) == (12, 240, 720, 240)
    with pytest.raises(ValidationError):
        cfg.n_curated = 3  # type: ignore[misc]


def test_negative_seed_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed"):
        generate(_tiny(), tmp_path, seed=-1)
