"""The ``features`` experiment options (issue 34): ``pca``, ``mirror``, ``normalize_parts``
and ``normalize_by``; their parity from audio files is in test_predict.py."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from helpers import write_tone_dataset

from audiotag.data.config import SplitConfig
from audiotag.data.manifest import read_manifest
from audiotag.features.audio import load_audio
from audiotag.features.config import FeaturesConfig
from audiotag.features.frames import normalised_windows, projection_of
from audiotag.features.frontend import FrontEnd, n_frames
from audiotag.features.store import FeatureSet, extract_features

BASE = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, n_mfcc=8, fmin=50.0,
            fmax=4000.0, clip_seconds=1.0, workers=0, eval_crops="center")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones") / "raw"
    write_tone_dataset(root)  # clips of 0.5-1.5 s
    return root


def _store(raw, tmp_path, **options):
    manifest, classes = read_manifest(raw)
    cfg = FeaturesConfig(**{**BASE, **options})
    extract_features(manifest, classes, raw, tmp_path / "store", cfg, SplitConfig(valid_fold=0))
    return tmp_path / "store"


def _clips(store, role):
    """``[(clip_id, frames (T, dim) float32)]`` of the clips with ``role``, whole."""
    index = pd.read_csv(store / "index.csv")
    arrays = {s: np.load(store / f"{s}.npy") for s in index["subset"].unique()}
    rows = index[index["role"] == role]
    return [(r.clip_id, arrays[r.subset][r.offset:r.offset + r.length].astype(np.float32))
            for r in rows.itertuples()]


def _normalised(store, role):
    """Every frame of the ``role`` clips normalised as the model sees them: ``(N, dim)``."""
    stats = json.loads((store / "stats.json").read_text())
    shift, scale = (np.asarray(stats[k], dtype=np.float32) for k in ("shift", "scale"))
    return np.concatenate([normalised_windows(f, None, 0, shift, scale, projection_of(stats))
                           [0].T for _, f in _clips(store, role)])


def test_defaults_leave_what_a_store_saves_as_it_was():
    # a store or checkpoint made with the options off keeps its bytes (and dvc its hashes)
    dump = FeaturesConfig().dump()
    assert not {"pca", "mirror", "normalize_parts", "normalize_by"} & set(dump)
    assert FeaturesConfig.saved(dump) == FeaturesConfig()
    on = FeaturesConfig(pca=4, mirror="wave")
    assert on.dump()["pca"] == 4 and FeaturesConfig.saved(on.dump()) == on


def test_a_mirrored_clip_is_its_first_half_then_that_half_reversed(raw, tmp_path):
    store = _store(raw, tmp_path, kind="waveform", mirror="wave")
    manifest, _ = read_manifest(raw)
    paths = dict(zip(manifest["clip_id"], manifest["path"], strict=True))
    half = 4000  # clip_seconds / 2 at 8 kHz
    checked = 0
    for clip, stored in _clips(store, "train") + _clips(store, "test"):
        wave = load_audio(raw / paths[clip], 8000).numpy()
        assert stored.shape == (2 * half, 1)  # every clip exactly clip_seconds
        if len(wave) < half:  # a short clip is padded (wrap) to the half first
            continue
        crop = wave[:half]
        np.testing.assert_allclose(stored[:, 0], np.concatenate([crop, crop[::-1]]),
                                   atol=1e-3)  # float16 storage
        checked += 1
    assert checked > 5


def test_a_mirrored_spectrogram_reverses_the_frames_of_the_first_half(raw, tmp_path):
    store = _store(raw, tmp_path, mirror="spectrogram")
    manifest, _ = read_manifest(raw)
    paths = dict(zip(manifest["clip_id"], manifest["path"], strict=True))
    cfg = FeaturesConfig(**BASE)
    window, half = n_frames(cfg), 1 + 4000 // 128  # frames of clip_seconds, of its half
    frontend, checked = FrontEnd(cfg), 0
    for clip, stored in _clips(store, "train"):
        assert stored.shape[0] == window
        wave = load_audio(raw / paths[clip], 8000)
        if len(wave) < 4000:
            continue
        with torch.no_grad():  # the features of the first half alone, as stored
            first = frontend(wave[None, :4000])[0].T.numpy().astype(np.float16)
        np.testing.assert_array_equal(stored[:half], first)
        np.testing.assert_array_equal(stored[half:], first[::-1][:window - half])
        checked += 1
    assert checked > 5
    # a different experiment from mirroring the waveform (the STFT sees the turn)
    wave = dict(_clips(_store(raw, tmp_path / "wave", mirror="wave"), "train"))
    assert max(np.abs(wave[c] - s).max() for c, s in _clips(store, "train")) > 1


@pytest.mark.parametrize(("options", "groups"), [
    ({"normalize_by": "part"}, [(0, 16), (16, 24)]),
    ({"normalize_by": "all"}, [(0, 24)]),
])
def test_a_normalised_part_or_whole_has_mean_0_and_sd_1_on_training_clips(raw, tmp_path,
                                                                           options, groups):
    x = _normalised(_store(raw, tmp_path, kind="logmel+mfcc", **options), "train")
    for a, b in groups:
        values = x[:, a:b].astype(np.float64)
        assert abs(values.mean()) < 1e-3 and abs(values.std() - 1) < 1e-3
    # ...but not each band on its own (that is normalize_by: band)
    assert np.abs(x.mean(axis=0)).max() > 0.1


def test_each_part_gets_its_own_normalize_mode(raw, tmp_path):
    store = _store(raw, tmp_path, kind="logmel+mfcc", normalize_parts=["standard", "none"])
    stats = json.loads((store / "stats.json").read_text())
    x = _normalised(store, "train")
    # the mel part: each band mean 0 / sd 1; the MFCCs untouched
    np.testing.assert_allclose(x[:, :16].mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(x[:, :16].std(axis=0), 1, atol=1e-3)
    assert stats["shift"][16:] == [0.0] * 8 and stats["scale"][16:] == [1.0] * 8
    raw_mfcc = np.concatenate([f for _, f in _clips(store, "train")])[:, 16:]
    np.testing.assert_array_equal(x[:, 16:], raw_mfcc)


def test_pca_bands_are_decorrelated_on_training_clips_and_fitted_on_them_only(raw, tmp_path):
    store = _store(raw, tmp_path, pca=6)
    stats = json.loads((store / "stats.json").read_text())
    assert np.asarray(stats["projection"]).shape == (16, 6)
    assert json.loads((store / "features.json").read_text())["dim"] == 6
    x = _normalised(store, "train").astype(np.float64)  # (frames, 6)
    cov = np.cov(x, rowvar=False, bias=True)
    off = cov - np.diag(np.diag(cov))
    assert np.abs(off).max() < 1e-3 * np.diag(cov).max()
    assert (np.diff(np.diag(cov)) <= 0).all()  # the largest variance first
    # the model's input has the projected bands, evaluation and training alike
    assert FeatureSet(store, ("test",))[0].x.shape == (6, n_frames(FeaturesConfig(**BASE)))
    assert FeatureSet(store, ("train",), train=True).dim == 6
    # fitted on training clips only: other validation and test audio, the same projection
    manifest, _ = read_manifest(raw)
    other = tmp_path / "other"
    other.mkdir()
    index = pd.read_csv(store / "index.csv").set_index("clip_id")
    rng = np.random.default_rng(3)
    shutil.copytree(raw, other / "raw")
    for clip, path in zip(manifest["clip_id"], manifest["path"], strict=True):
        if index.loc[clip, "role"] != "train":
            sf.write(other / "raw" / path, rng.uniform(-1, 1, 8000).astype(np.float32), 8000)
    again = json.loads((_store(other / "raw", other, pca=6) / "stats.json").read_text())
    assert again["projection"] == stats["projection"]


@pytest.mark.parametrize(("options", "message"), [
    ({"kind": "logmel+mfcc", "normalize_parts": ["standard"]},
     r"normalize_parts: 1 value\(s\) for kind=logmel\+mfcc of 2 part"),
    ({"normalize_parts": ["zscore"]}, r"normalize_parts"),
    ({"normalize_by": "clip"}, r"normalize_by"),
    ({"mirror": "spectrogram", "kind": "waveform"}, r"mirror=spectrogram needs a spectral"),
    ({"mirror": "wave", "beat_sync": True}, r"mirror makes every clip"),
    ({"pca": 17}, r"pca=17 components of 16 bands"),
    ({"pca": -1}, r"pca"),
])
def test_bad_option_values_name_the_key(options, message):
    with pytest.raises(ValueError, match=message):
        FeaturesConfig(**{**BASE, **options})
