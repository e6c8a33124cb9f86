"""Feature kinds: librosa parity, stacks, crops, pad modes through the store, every kind trains.

Parity tolerances (float32 torch vs librosa 0.11 on the same audio, settings matched as in
docs/features.md): log-mel and log-STFT within 0.002 dB, MFCC within 0.002 (absolute, on
values up to ~400), chroma within 1e-5. With librosa's *default* padding (zeros instead of
reflect) the same comparison is off by several dB, which the control test checks.
"""

from __future__ import annotations

import json

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from helpers import write_tone_dataset
from torch.utils.data import DataLoader

from audiotag.core.errors import ParamsError
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import read_manifest, write_manifest
from audiotag.data.split import assign_roles
from audiotag.features.config import FeaturesConfig
from audiotag.features.crops import random_start
from audiotag.features.frames import center_start, cut, eval_starts
from audiotag.features.frontend import FrontEnd, feature_dim, n_frames
from audiotag.features.store import (
    Batch,
    ClipPipeline,
    FeatureSet,
    Item,
    collate_clips,
    extract_features,
)
from audiotag.models import create_model
from audiotag.training.config import TrainConfig
from audiotag.training.inference import clip_losses, predict, predict_clips
from audiotag.training.loop import multilabel_bce
from audiotag.training.recipe import check_model_accepts
from audiotag.training.run import train_model

SR = 16000
MATCHED = dict(sample_rate=SR, n_fft=512, hop_length=160, win_length=400, n_mels=40, fmin=20.0,
               fmax=8000.0, n_mfcc=20, top_db=80.0, log_offset=1e-10)
TOLERANCE = {"logmel": 2e-3, "stft": 2e-3, "mfcc": 2e-3, "chroma": 1e-5}
KINDS = ["waveform", "stft", "logmel", "mfcc", "chroma", "logmel+mfcc", "logmel+chroma"]
SPLIT = SplitConfig(valid_fold=0)
TINY = FeaturesConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, fmin=50,
                      fmax=4000, n_mfcc=8, clip_seconds=0.5, batch_size=4, workers=0)


def _signal() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR
    y = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1900 * t * (1 + 0.1 * t))
         + 0.05 * rng.standard_normal(len(t)))
    y[SR // 2:SR // 2 + 2000] *= 1e-3  # a quiet stretch exercises the top_db floor
    return y.astype(np.float32)


def _librosa(kind: str, y: np.ndarray, pad_mode: str = "reflect") -> np.ndarray:
    power = np.abs(librosa.stft(y, n_fft=512, hop_length=160, win_length=400, window="hann",
                                center=True, pad_mode=pad_mode)) ** 2
    if kind == "stft":
        return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=80.0)
    if kind == "chroma":
        return librosa.feature.chroma_stft(S=power, sr=SR, tuning=0.0, norm=np.inf, n_chroma=12)
    mel = librosa.feature.melspectrogram(S=power, sr=SR, n_mels=40, fmin=20.0, fmax=8000.0,
                                         htk=False, norm="slaney")
    db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80.0)
    return db if kind == "logmel" else librosa.feature.mfcc(S=db, n_mfcc=20, dct_type=2,
                                                            norm="ortho")


def _ours(kind: str, y: np.ndarray) -> np.ndarray:
    frontend = FrontEnd(FeaturesConfig(kind=kind, **MATCHED))
    with torch.no_grad():
        return frontend(torch.from_numpy(y)[None])[0].numpy()


@pytest.mark.parametrize("kind", ["logmel", "stft", "mfcc", "chroma"])
def test_torch_front_end_matches_librosa(kind):
    y = _signal()
    ours, ref = _ours(kind, y), _librosa(kind, y)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= TOLERANCE[kind]


def test_parity_needs_matched_padding():
    """Control: librosa's default zero padding gives different edge frames (the test can fail)."""
    y = _signal()
    assert np.abs(_ours("logmel", y) - _librosa("logmel", y, pad_mode="constant")).max() > 1.0


def test_log_mel_via_librosa_from_the_waveform():
    y = _signal()
    ref = librosa.power_to_db(librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=512, hop_length=160, win_length=400, window="hann", center=True,
        pad_mode="reflect", power=2.0, n_mels=40, fmin=20.0, fmax=8000.0, htk=False,
        norm="slaney"), ref=1.0, amin=1e-10, top_db=80.0)
    assert np.abs(_ours("logmel", y) - ref).max() <= TOLERANCE["logmel"]


def test_stacks_are_their_parts_side_by_side():
    y = _signal()
    for kind in ("logmel+mfcc", "logmel+chroma"):
        a, b = kind.split("+")
        stacked = _ours(kind, y)
        assert stacked.shape[0] == feature_dim(FeaturesConfig(kind=kind, **MATCHED))
        np.testing.assert_array_equal(stacked, np.concatenate([_ours(a, y), _ours(b, y)]))


def test_natural_log_option():
    y = _signal()
    cfg = FeaturesConfig(kind="logmel", to_db=False, log_offset=1e-6, **{
        k: v for k, v in MATCHED.items() if k != "log_offset"})
    ours = FrontEnd(cfg)(torch.from_numpy(y)[None])[0].numpy()
    mel = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=512, hop_length=160, win_length=400,
                                         pad_mode="reflect", n_mels=40, fmin=20.0, fmax=8000.0)
    np.testing.assert_allclose(ours, np.log(mel + 1e-6), atol=2e-4)


# ----------------------------------------------------------------------------- crops


def test_crop_positions_on_hand_made_lengths():
    assert center_start(10, 4) == 3 and center_start(4, 4) == 0
    assert eval_starts(10, 4, 1) == [3]
    assert eval_starts(10, 4, 3) == [0, 3, 6]  # first, middle and last window
    assert eval_starts(4, 4, 3) == [0, 0, 0]
    torch.manual_seed(0)
    starts = {random_start(10, 4) for _ in range(200)}
    assert starts == set(range(7))  # every legal start, nothing past the end
    torch.manual_seed(0)
    again = {random_start(10, 4) for _ in range(200)}
    assert again == starts
    frames = np.arange(10.0)[:, None]
    assert cut(frames, 6, 4)[:, 0].tolist() == [6, 7, 8, 9]
    assert cut(frames, 8, 4)[:, 0].tolist() == [8, 9, 0, 0]


def _wave_store(tmp_path, waves: dict[str, np.ndarray], sr=1000, **cfg) -> FeatureSet:
    """A store of kind waveform (normalize none) over hand-made clips: features = samples."""
    raw = tmp_path / "raw"
    (raw / "audio").mkdir(parents=True)
    rows = []
    for i, (clip_id, wave) in enumerate(waves.items()):
        sf.write(raw / "audio" / f"{clip_id}.wav", wave.astype(np.float32), sr, subtype="FLOAT")
        rows.append({"clip_id": clip_id, "path": f"audio/{clip_id}.wav", "labels": "a",
                     "subset": "curated", "fold": 1 + i % 2, "duration_s": len(wave) / sr,
                     "sample_rate": sr})
    write_manifest(pd.DataFrame(rows), ["a"], raw)
    manifest, classes = read_manifest(raw)
    config = FeaturesConfig(kind="waveform", sample_rate=sr, fmin=0, fmax=None, normalize="none",
                            workers=0, **{"eval_crops": "center", **cfg})  # items: one window
    extract_features(manifest, classes, raw, tmp_path / "store", config, SPLIT)
    return tmp_path / "store"


@pytest.mark.parametrize("mode, expected", [
    ("wrap", [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]),
    ("zeros", [1, 2, 3, 4, 0, 0, 0, 0, 0, 0]),
    ("reflect", [1, 2, 3, 4, 3, 2, 1, 2, 3, 4]),
    ("mirror", [1, 2, 3, 4, 4, 3, 2, 1, 1, 2]),
])
def test_pad_modes_through_the_store(tmp_path, mode, expected):
    store = _wave_store(tmp_path, {"short": np.array([1, 2, 3, 4]) / 8}, clip_seconds=0.01,
                        pad_mode=mode)
    x = FeatureSet(store, ("train",))[0][0]  # (1, 10 samples)
    assert (x[0] * 8).round().tolist() == expected


def test_crop_policies_on_a_ramp(tmp_path):
    ramp = np.arange(40) / 64  # 40 samples; the window is 10
    store = _wave_store(tmp_path, {"ramp": ramp, "other": ramp}, clip_seconds=0.01)
    center = FeatureSet(store, ("train",))[0][0][0] * 64
    assert center.round().tolist() == list(range(15, 25))
    meta = json.loads((store / "features.json").read_text())
    meta["config"]["eval_crops"] = 4
    (store / "features.json").write_text(json.dumps(meta))
    x = FeatureSet(store, ("train",))[0][0]  # (4 crops, 1, 10)
    assert x.shape == (4, 1, 10)
    assert (x[:, 0, 0] * 64).round().tolist() == [0, 10, 20, 30]
    train = FeatureSet(store, ("train",), train=True)
    torch.manual_seed(0)
    firsts = {int(round(float(train[0][0][0, 0]) * 64)) for _ in range(100)}
    assert len(firsts) > 10 and min(firsts) >= 0 and max(firsts) <= 30
    torch.manual_seed(0)
    assert {int(round(float(train[0][0][0, 0]) * 64)) for _ in range(100)} == firsts


# ------------------------------------------------------------- stores of every kind


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    write_tone_dataset(root / "raw", counts=(("curated", 12), ("noisy", 6), ("test", 6)))
    return root


def _store(root, name, **changes):
    manifest, classes = read_manifest(root / "raw")
    out = root / name
    if not out.exists():
        extract_features(manifest, classes, root / "raw", out, TINY.model_copy(update=changes),
                         SPLIT)
    return out


def test_workers_do_not_change_the_store(tones):
    one = _store(tones, "w0", kind="logmel+chroma")
    two = _store(tones, "w2", kind="logmel+chroma", workers=2)
    for name in ("curated.npy", "noisy.npy", "test.npy", "index.csv", "stats.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_stacked_parts_keep_their_own_statistics(tones):
    stacked = json.loads((_store(tones, "w0", kind="logmel+chroma") / "stats.json").read_text())
    alone = json.loads((_store(tones, "chroma", kind="chroma") / "stats.json").read_text())
    assert stacked["parts"][1] == {"name": "chroma", "start": 16, "stop": 28}
    np.testing.assert_allclose(stacked["shift"][16:], alone["shift"], rtol=1e-9)
    np.testing.assert_allclose(stacked["scale"][16:], alone["scale"], rtol=1e-9)
    assert stacked["shift"][0] < -10 and 0 < stacked["shift"][20] < 1  # dB vs chroma ranges


@pytest.mark.parametrize("normalize", ["standard", "minmax", "none"])
def test_statistics_ignore_test_audio(tones, tmp_path, normalize):
    import shutil

    shutil.copytree(tones / "raw", tmp_path / "raw")
    manifest, classes = read_manifest(tmp_path / "raw")
    cfg = TINY.model_copy(update={"normalize": normalize})
    extract_features(manifest, classes, tmp_path / "raw", tmp_path / "a", cfg, SPLIT)
    roles = assign_roles(manifest, SPLIT)
    rng = np.random.default_rng(1)
    for path, role in zip(manifest["path"], roles, strict=True):
        if role != "train":
            sf.write(tmp_path / "raw" / path, rng.uniform(-1, 1, 6000).astype(np.float32), 8000)
    extract_features(manifest, classes, tmp_path / "raw", tmp_path / "b", cfg, SPLIT)
    before = json.loads((tmp_path / "a/stats.json").read_text())
    assert json.loads((tmp_path / "b/stats.json").read_text()) == before
    x = torch.stack([FeatureSet(tmp_path / "a", ("train",))[i][0] for i in range(5)])
    if normalize == "minmax":
        assert x.min() >= -1e-3 and x.max() <= 1 + 1e-3
    if normalize == "none":
        assert before["shift"] == [0.0] * 16 and before["scale"] == [1.0] * 16


def test_beat_sync_gives_variable_lengths_that_collate(tones):
    store = _store(tones, "beats", beat_sync=True)
    data = FeatureSet(store, ("train",))
    lengths = data.index["length"].to_numpy()
    assert (lengths >= 1).all() and (lengths < n_frames(TINY)).all()
    pick = [int(lengths.argmin()), int(lengths.argmax()), 0, 1]  # lengths differ
    assert lengths[pick[0]] < lengths[pick[1]]
    items = [data[i] for i in pick]
    assert [it.x.shape[-1] for it in items] == lengths[pick].tolist()
    batch = collate_clips(items)
    x, y, w, lens = batch.x, batch.y, batch.w, batch.lengths
    assert x.shape == (4, 16, lengths.max()) and y.shape == (4, 3) and w.shape == (4,)
    assert lens.tolist() == lengths[pick].tolist()
    assert batch.noisy.tolist() == data.is_noisy[pick].tolist()
    assert (x[0, :, lengths[pick[0]]:] == 0).all()
    # a model that takes lengths gets them in prediction (and training: same helper)
    seen = []

    class Spy(torch.nn.Module):
        accepts_lengths = True

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(16, 3)

        def forward(self, x, lengths=None):
            seen.append(lengths)
            return self.fc(x.mean(dim=-1))

    loader = DataLoader(torch.utils.data.Subset(data, pick), batch_size=4,
                        collate_fn=collate_clips)
    scores, _, _ = predict(Spy(), loader, torch.device("cpu"))
    assert scores.shape == (4, 3) and seen[0].tolist() == lengths[pick].tolist()


def test_a_batch_names_its_parts():
    # items and batches are records: noisy flags and lengths are named fields, not extra
    # tuple elements that consumers tell apart by count or dtype
    def item(frames, noisy=None):
        return Item(torch.ones(16, frames), torch.tensor([1.0, 0.0, 0.0]), torch.tensor(0.5),
                    None if noisy is None else torch.tensor(noisy))

    batch = collate_clips([item(5, 1.0), item(3, 0.0)])
    assert isinstance(batch, Batch) and len(batch) == 2 and batch.x.shape == (2, 16, 5)
    assert batch.noisy.tolist() == [1.0, 0.0] and batch.lengths.tolist() == [5, 3]
    assert batch.lengths.dtype == torch.int64 and (batch.x[1, :, 3:] == 0).all()
    same = collate_clips([item(4), item(4)])  # equal lengths, no flags
    assert same.lengths is None and same.noisy is None and same.w.tolist() == [0.5, 0.5]
    moved = same.to(torch.device("cpu"))  # on a device, a batch without flags has zeros
    assert moved.noisy.tolist() == [0.0, 0.0] and moved.lengths is None


def test_crops_of_a_clip_stay_together(tones):
    store = _store(tones, "crops", crops_per_clip=3, eval_crops=3, eval_aggregate="mean")
    train = FeatureSet(store, ("train",), train=True)
    batch = next(iter(DataLoader(train, batch_size=4, collate_fn=collate_clips)))
    x, y, w = batch.x, batch.y, batch.w
    assert x.shape == (4, 3, 16, n_frames(TINY)) and y.shape == (4, 3) and w.shape == (4,)
    torch.manual_seed(0)
    model = create_model("cnn1d", num_classes=3, n_mels=16, channels=[8]).eval()
    per_clip = clip_losses(model, x, y, multilabel_bce)  # mean over each clip's crops
    by_hand = torch.stack([multilabel_bce(model(x[i]), y[i].expand(3, -1)).mean()
                           for i in range(4)])
    torch.testing.assert_close(per_clip, by_hand)
    # evaluation: one row per clip, the mean of its crops' sigmoid scores
    pred = predict_clips(model, store, ("test",), batch_size=4, device=torch.device("cpu"))
    test = FeatureSet(store, ("test",))
    assert len(pred) == len(test) == 6 and pred.clip_ids == test.clip_ids
    first = torch.sigmoid(model(test[0][0])).mean(dim=0).detach().numpy()
    np.testing.assert_allclose(pred.scores[0], first, rtol=1e-5)
    np.testing.assert_array_equal(pred.targets, test.targets)
    scores, targets, loss = predict(model, DataLoader(test, batch_size=5, collate_fn=collate_clips),
                                    torch.device("cpu"), multilabel_bce)
    assert scores.shape == (6, 3) and np.isfinite(loss)


def test_default_evaluation_windows_reach_both_ends_of_the_longest_default_clip(repo_root):
    # a test clip's labels name every event in it; the centre 4 s of a 10 s synthetic clip
    # missed about 13 % of the labelled events, two windows (its start and its end) 0.6 %
    from audiotag.core.params import parse_group, read_params
    from audiotag.data.sources import parse_data

    raw = read_params(repo_root / "params.yaml")
    cfg = parse_group(raw, "features", FeaturesConfig)
    _, data = parse_data(raw)
    length = 1 + int(data.max_seconds * cfg.sample_rate) // cfg.hop_length  # frames
    window = n_frames(cfg)
    heard = np.zeros(length, dtype=bool)
    for start in eval_starts(length, window, cfg.n_eval_crops):
        heard[start:start + window] = True
    assert heard[0] and heard[-1], "the first or last frames of a long clip are never scored"
    assert heard.mean() >= 0.8
    assert cfg.eval_aggregate == "max"  # an event heard in one window counts undiluted


def test_eval_aggregate_max_scores_a_clip_by_its_best_window(tones):
    # labels name every sound of a clip, wherever it is: a sound heard in one of the
    # windows is present, so its score is that window's, not diluted by the others
    store = _store(tones, "crops-max", eval_crops=3, eval_aggregate="max")
    torch.manual_seed(0)
    model = create_model("cnn1d", num_classes=3, n_mels=16, channels=[8]).eval()
    pred = predict_clips(model, store, ("test",), batch_size=4, device=torch.device("cpu"))
    test = FeatureSet(store, ("test",))
    for i in range(len(test)):
        per_window = torch.sigmoid(model(test[i][0])).detach().numpy()  # (3, classes)
        np.testing.assert_allclose(pred.scores[i], per_window.max(axis=0), rtol=1e-5)
    assert not np.allclose(pred.scores, _mean_scores(model, test), rtol=1e-3)


def test_a_store_or_checkpoint_saved_before_eval_aggregate_keeps_the_mean(tones):
    store = _store(tones, "crops-old", eval_crops=3)
    meta = json.loads((store / "features.json").read_text())
    del meta["config"]["eval_aggregate"]  # as written before the key existed
    (store / "features.json").write_text(json.dumps(meta))
    assert FeatureSet(store, ("test",)).config.eval_aggregate == "mean"
    assert ClipPipeline(meta["config"], json.loads((store / "stats.json").read_text())
                        ).config.eval_aggregate == "mean"
    assert FeaturesConfig().eval_aggregate == "max"  # what a new run gets


def _mean_scores(model, data):
    return np.stack([torch.sigmoid(model(data[i].x)).mean(dim=0).detach().numpy()
                     for i in range(len(data))])


@pytest.mark.parametrize("kind, normalize, extra", [
    *[(k, "standard", {}) for k in KINDS],
    ("logmel", "minmax", {}), ("logmel", "none", {}), ("mfcc", "standard", {"beat_sync": True}),
    ("logmel", "standard", {"crops_per_clip": 2, "eval_crops": 2}),
])
def test_every_kind_trains(tones, tmp_path, kind, normalize, extra):
    store = _store(tones, f"{kind}-{normalize}-{len(extra)}-{sorted(extra)}", kind=kind,
                   normalize=normalize, **extra)
    data = FeatureSet(store, ("train",))
    assert data.dim == feature_dim(data.config)
    cfg = TrainConfig(models=["cnn1d"], epochs=1, batch_size=8, device="cpu")
    history = train_model("cnn1d", {"channels": [8, 8]}, store, tmp_path / "m", tmp_path / "l",
                          cfg, seed=0)
    assert np.isfinite(history[0].train_loss) and 0 < history[0].valid_lwlrap <= 1
    if kind != "waveform":
        for name in ("cnn2d", "crnn"):
            check_model_accepts(name, kind)


def test_two_d_models_refuse_raw_waveforms():
    with pytest.raises(ParamsError, match=r"features\.kind=waveform.*'cnn2d'.*cnn1d"):
        check_model_accepts("cnn2d", "waveform")
    check_model_accepts("cnn1d", "waveform")


@pytest.mark.parametrize("name", ["cnn2d", "crnn", "cnn1d"])
@pytest.mark.parametrize("dim", [1, 12, 20])
def test_models_take_small_feature_dims(name, dim):
    model = create_model(name, num_classes=3, n_mels=dim).eval()
    frames = 200 if dim == 1 else 30
    with torch.no_grad():
        assert model(torch.randn(2, dim, frames)).shape == (2, 3)


def test_bad_combinations_name_the_key():
    with pytest.raises(ValueError, match="beat_sync"):
        FeaturesConfig(kind="waveform", beat_sync=True)
    with pytest.raises(ValueError, match="crops_per_clip"):
        FeaturesConfig(beat_sync=True, crops_per_clip=2)
    with pytest.raises(ValueError, match="n_mfcc"):
        FeaturesConfig(kind="mfcc", n_mels=16, n_mfcc=20)
    with pytest.raises(ValueError, match="win_length"):
        FeaturesConfig(win_length=2048)
