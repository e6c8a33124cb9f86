import json

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import tone_clip, write_tone_dataset

from audiotag.core.errors import AudioError
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import read_manifest
from audiotag.data.split import assign_roles
from audiotag.features.config import FeaturesConfig
from audiotag.features.logmel import LogMel, n_frames
from audiotag.features.store import FeatureSet, extract_features

CFG = FeaturesConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, fmin=50,
                     fmax=4000, clip_seconds=1.0, batch_size=4, eval_crops="center")
SPLIT = SplitConfig(valid_fold=0)


@pytest.fixture()
def dataset(tmp_path):
    write_tone_dataset(tmp_path / "raw")
    return tmp_path


def _extract(root, out="features", cfg=CFG):
    manifest, classes = read_manifest(root / "raw")
    extract_features(manifest, classes, root / "raw", root / out, cfg, SPLIT)
    return root / out


def test_store_layout_and_roles(dataset):
    store = _extract(dataset)
    index = __import__("pandas").read_csv(store / "index.csv")
    assert set(index["role"]) == {"train", "valid", "test"}
    valid = index[index["role"] == "valid"]
    assert (valid["subset"] == "curated").all() and (valid["fold"] == 0).all()
    # noisy clips of fold 0 still train (valid_subsets is curated only)
    assert ((index["subset"] == "noisy") & (index["fold"] == 0) & (index["role"] == "train")).any()
    arr = np.load(store / "curated.npy", mmap_mode="r")  # (frames of every clip, dim)
    curated = index[index["subset"] == "curated"]
    assert arr.shape == (curated["length"].sum(), 16) and arr.dtype == np.float16
    # clips follow each other; short clips were padded to the window, long ones kept whole
    assert (curated["offset"].to_numpy()[1:] == curated["offset"].cumsum().to_numpy()[:-1]
            * 0 + (curated["offset"] + curated["length"]).to_numpy()[:-1]).all()
    assert (curated["length"] >= n_frames(CFG)).all() and (curated["length"] > n_frames(CFG)).any()
    assert np.isfinite(arr).all()
    assert not list(dataset.glob("*.partial"))


def test_normalisation_is_fitted_on_training_clips_only(dataset):
    before = json.loads((_extract(dataset, "a") / "stats.json").read_text())
    # replace every test clip and validation clip with very different audio
    manifest, _ = read_manifest(dataset / "raw")
    roles = assign_roles(manifest, SPLIT)
    rng = np.random.default_rng(1)
    for path, role in zip(manifest["path"], roles, strict=True):
        if role in ("test", "valid"):
            sf.write(dataset / "raw" / path, rng.uniform(-1, 1, 8000).astype(np.float32), 8000)
    after = json.loads((_extract(dataset, "b") / "stats.json").read_text())
    assert after == before
    assert before["n_clips"] == int((roles == "train").sum())
    # ...while changing a training clip does change them
    train_path = manifest["path"][np.flatnonzero(roles == "train")[0]]
    sf.write(dataset / "raw" / train_path, rng.uniform(-1, 1, 8000).astype(np.float32), 8000)
    changed = json.loads((_extract(dataset, "c") / "stats.json").read_text())
    assert changed["mean"] != before["mean"]


def test_feature_set_normalises_training_clips(dataset):
    store = _extract(dataset)
    train = FeatureSet(store, ("train",))
    # every stored frame of the training clips (whole clips: stats are fitted on them)
    frames = np.concatenate([
        np.load(store / f"{s}.npy")[o:o + n]
        for s, o, n in train.index[["subset", "offset", "length"]].itertuples(index=False)])
    x = (frames.astype(np.float32) - train.shift) / train.scale  # (frames, n_mels)
    np.testing.assert_allclose(x.mean(axis=0), np.zeros(16), atol=1e-3)
    np.testing.assert_allclose(x.std(axis=0), np.ones(16), atol=1e-3)
    # an item is the normalised centre window of its clip
    item = train[0][0].numpy()  # (n_mels, frames)
    s, o, n = train.index.loc[0, ["subset", "offset", "length"]]
    start = o + (n - n_frames(CFG)) // 2
    raw = np.load(store / f"{s}.npy")[start:start + n_frames(CFG)].astype(np.float32)
    np.testing.assert_allclose(item, ((raw - train.shift) / train.scale).T, rtol=1e-6)
    y = train[0][1]
    assert y.shape == (3,) and set(y.tolist()) <= {0.0, 1.0}
    assert len(FeatureSet(store, ("test",))) == 6


def test_a_clips_features_do_not_depend_on_its_batch():
    rng = np.random.default_rng(0)
    loud = torch.from_numpy(tone_clip(["low", "high"], 1.0, 8000, rng))
    quiet = 1e-3 * torch.from_numpy(tone_clip(["mid"], 1.0, 8000, rng))
    frontend = LogMel(CFG)
    alone = frontend(quiet[None])[0]
    batched = frontend(torch.stack([loud, quiet]))[1]
    assert torch.allclose(alone, batched, atol=1e-4)
    assert alone.max() - alone.min() <= CFG.top_db + 1e-4


def test_tones_land_in_the_right_mel_bands():
    rng = np.random.default_rng(0)
    frontend = LogMel(CFG)
    low = frontend(torch.from_numpy(tone_clip(["low"], 1.0, 8000, rng))[None])[0].mean(dim=1)
    high = frontend(torch.from_numpy(tone_clip(["high"], 1.0, 8000, rng))[None])[0].mean(dim=1)
    assert low.argmax() < high.argmax()


def test_a_non_finite_clip_stops_extraction_naming_the_file(dataset):
    manifest, _ = read_manifest(dataset / "raw")
    path = manifest["path"].iloc[0]  # a curated training clip, which the statistics fit on
    wave, sr = sf.read(dataset / "raw" / path, dtype="float32")
    wave[len(wave) // 2] = np.nan  # screening would exclude it; the store must not trust that
    sf.write(dataset / "raw" / path, wave, sr, subtype="FLOAT")
    with pytest.raises(AudioError, match=rf"{path}: .*non-finite"):
        _extract(dataset)
    assert not (dataset / "features").exists()


def test_non_finite_statistics_are_never_written():
    from audiotag.features.store import _BandStats

    stats = _BandStats(3)
    stats.update(np.array([[0.0, 1.0, 2.0], [1.0, np.inf, 2.0]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"statistics .*not finite.*band 1"):
        stats.result(FeaturesConfig(), [])
