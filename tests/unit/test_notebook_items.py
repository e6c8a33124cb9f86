"""Issue 21, the lab notebooks' remaining experiments: each item's param (or always-made
output) through the code the stage runs, on tiny generated stores."""

import json
import math

import pandas as pd
import pytest
import torch
from helpers import SMALL_CNN1D, TONE_FEATURES, TONE_TRAIN, write_tone_dataset

from audiotag.analysis.config import WeightsConfig
from audiotag.analysis.explore import explore_dataset
from audiotag.analysis.saliency import activation_maps, input_saliency, layer_view_name
from audiotag.analysis.weight_report import analyse_weights
from audiotag.cleaning.config import CleanConfig
from audiotag.cleaning.cooccurrence import label_cooccurrence
from audiotag.cleaning.run import clean_labels
from audiotag.core.errors import DataSourceError, ParamsError
from audiotag.data.classes import reshape_classes
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import read_manifest
from audiotag.data.split import assign_roles
from audiotag.evaluation.config import EvaluateConfig
from audiotag.evaluation.evaluate import evaluate_model
from audiotag.features.store import FeatureSet, extract_features
from audiotag.metrics import lwlrap
from audiotag.models import create_model
from audiotag.models.registry import MAX_PARAMETERS
from audiotag.training.checkpoint import load_checkpoint, save_checkpoint
from audiotag.training.config import TrainConfig
from audiotag.training.inference import predict
from audiotag.training.recipe import (
    Recipe,
    _loader,
    _score_loader,
    describe_task,
    init_from_checkpoints,
)
from audiotag.training.run import train_model
from audiotag.training.tasks import TaskSpec, make_loss

FEATURES = TONE_FEATURES
TRAIN = TONE_TRAIN
SMALL = SMALL_CNN1D

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _store(root, features=FEATURES, split=None, **kwargs):
    write_tone_dataset(root / "raw", counts=(("curated", 24), ("noisy", 12), ("test", 9)),
                       **kwargs)
    manifest, classes = read_manifest(root / "raw")
    extract_features(manifest, classes, root / "raw", root / "features", features,
                     split or SplitConfig(valid_fold=0))
    return root / "features"


@pytest.fixture(scope="module")
def multi(tmp_path_factory):  # multi-label tones with regression targets
    return _store(tmp_path_factory.mktemp("multi"), targets=True)


@pytest.fixture(scope="module")
def single(tmp_path_factory):  # one tone per clip
    return _store(tmp_path_factory.mktemp("single"), single_label=True)


def _train(store, out, cfg=TRAIN, name="cnn1d", params=SMALL, seed=0, **kwargs):
    return train_model(name, params, store, out / "model", out / "live", cfg, seed, **kwargs)


def _cfg(**update):
    """TRAIN with ``update``, validated as params.yaml would be."""
    return TrainConfig.model_validate({**TRAIN.model_dump(), **update})


def _tsv(path):
    rows = path.read_text().splitlines()[1:]
    return [float(r.split("\t")[-1]) for r in rows]


# ---- 7: per-epoch train metric on a fixed subset, seconds per epoch -------------------------

def test_train_metric_per_epoch_on_a_fixed_subset_and_epoch_seconds(multi, tmp_path):
    history = _train(multi, tmp_path / "a", _cfg(train_score_clips=10),
                     timings=tmp_path / "a/timings.json")
    assert all(0 < r.train_lwlrap <= 1 for r in history)
    assert all(r.seconds > 0 for r in history)
    plots = tmp_path / "a/live/plots/metrics"
    assert _tsv(plots / "train/lwlrap.tsv") == pytest.approx([r.train_lwlrap for r in history])
    # seconds per epoch: in the timings file (metrics/timings/train/<model>.json), apart from
    # the curves, which are the same bits on every machine
    timings = json.loads((tmp_path / "a/timings.json").read_text())
    assert timings["epoch_seconds"] == [round(r.seconds, 3) for r in history]
    live = json.loads((tmp_path / "a/live/metrics.json").read_text())
    assert 0 < live["train"]["lwlrap"] <= 1 and "epoch_seconds" not in live
    # fixed clips, fixed crops: the saved weights of epoch 1 and of the best epoch score
    # on the subset exactly what their epochs logged
    spec = TaskSpec("multilabel", 3)
    loader = _score_loader(Recipe("cnn1d", SMALL, multi, _cfg(train_score_clips=10), 0), spec,
                           torch.device("cpu"))
    assert len(loader.dataset) == 10
    best = max(history, key=lambda r: r.valid_lwlrap)
    for name, epoch in (("first_epoch.pt", history[0]), ("model.pt", best)):
        model, _ = load_checkpoint(tmp_path / "a/model" / name)
        scores, targets, _ = predict(model, loader, torch.device("cpu"), make_loss(spec), spec)
        assert lwlrap(targets, scores) == pytest.approx(epoch.train_lwlrap), name
    # wall time stays out of the model directory (a DVC out: same params, same hash)
    saved = json.loads((tmp_path / "a/model/history.json").read_text())["epochs"][0]
    assert "seconds" not in saved and "train_lwlrap" in saved
    off = _train(multi, tmp_path / "c", _cfg(train_score_clips=0, epochs=1))
    assert math.isnan(off[0].train_lwlrap)
    assert not (tmp_path / "c/live/plots/metrics/train/lwlrap.tsv").exists()


def test_train_accuracy_per_epoch_on_single_label_data(single, tmp_path):
    history = _train(single, tmp_path, _cfg(train_score_clips=12, epochs=2))
    assert all(0 <= r.train_accuracy <= 1 for r in history)
    assert (tmp_path / "live/plots/metrics/train/accuracy.tsv").exists()


# ---- 2: split.fraction -------------------------------------------------------------------

def _manifest(n_per_class=20):
    rows = []
    for name in ("a", "b", "c", "rare"):
        n = 4 if name == "rare" else n_per_class
        for i in range(n):
            for subset in ("curated", "noisy"):
                rows.append({"clip_id": f"{subset}-{name}-{i}", "subset": subset,
                             "labels": name if i % 3 else f"{name};a", "fold": i % 5})
    rows += [{"clip_id": f"t{i}", "subset": "test", "labels": "a", "fold": -1}
             for i in range(7)]
    return pd.DataFrame(rows)


def test_split_fraction_keeps_a_stratified_seeded_share_of_the_training_clips():
    manifest = _manifest()
    full = assign_roles(manifest, SplitConfig())
    half = assign_roles(manifest, SplitConfig(fraction=0.5))
    # validation and test clips never change; a dropped training clip is unused
    assert (half[full != "train"] == full[full != "train"]).all()
    assert set(half[(full == "train") & (half != "train")]) == {"unused"}
    train = manifest[half == "train"]
    assert abs(len(train) - 0.5 * (full == "train").sum()) <= 8  # one rounding per stratum
    # stratified: per subset and per class, about half of each, and the rare class stays
    for subset in ("curated", "noisy"):
        was = manifest[(full == "train") & (manifest["subset"] == subset)]
        now = train[train["subset"] == subset]
        for name in ("a", "b", "c", "rare"):
            n_was = was["labels"].str.split(";").apply(lambda ls, n=name: n in ls).sum()
            n_now = now["labels"].str.split(";").apply(lambda ls, n=name: n in ls).sum()
            assert n_now >= 1 and abs(n_now - n_was / 2) <= 3, (subset, name)
    # seeded: the same seed the same clips, another seed others
    again = assign_roles(manifest, SplitConfig(fraction=0.5))
    other = assign_roles(manifest, SplitConfig(fraction=0.5, fraction_seed=1))
    assert (again == half).all() and not (other == half).all()
    assert (assign_roles(manifest, SplitConfig(fraction=1.0)) == full).all()
    with pytest.raises(ValueError):
        SplitConfig(fraction=0.0)


# ---- 1: train.targets, train.target_weights ----------------------------------------------

def test_train_targets_picks_the_regression_columns_a_model_learns(multi, tmp_path):
    _train(multi, tmp_path, _cfg(task="regression", epochs=1, targets=["n_tones"]))
    _, meta = load_checkpoint(tmp_path / "model/model.pt")
    assert meta.targets == ["targets_n_tones"] and meta.num_classes == 1
    metrics = evaluate_model(tmp_path / "model/model.pt", multi, tmp_path / "m.json",
                             tmp_path / "plots", EvaluateConfig(score_train=False))
    assert set(metrics["regression"]) == {"n_tones", "mse"}  # mse: over the targets
    # the prefix may be written; the order given is the output order
    spec = describe_task(_cfg(task="multitask", targets=["targets_seconds", "n_tones"],
                              target_weights=[2.0, 0.5]), FeatureSet(multi, ("train",)))
    assert spec.targets == ("targets_seconds", "targets_n_tones")
    assert spec.target_weights == (2.0, 0.5) and spec.n_outputs == 3 + 2
    with pytest.raises(ParamsError, match=r"train\.targets.*valence.*n_tones"):
        describe_task(_cfg(task="regression", targets=["valence"]),
                      FeatureSet(multi, ("train",)))


def test_target_weights_scale_each_targets_squared_error():
    spec = TaskSpec("regression", 0, 2, targets=("targets_a", "targets_b"),
                    target_weights=(2.0, 0.0))
    outputs = torch.tensor([[1.0, 5.0], [0.0, 0.0]])
    targets = torch.tensor([[0.0, 0.0], [3.0, float("nan")]])
    # per clip: sum over known targets of w * err^2, over the number of known targets
    expected = torch.tensor([(2 * 1.0 + 0 * 25.0) / 2, 2 * 9.0 / 1])
    assert torch.allclose(make_loss(spec)(outputs, targets), expected)
    plain = TaskSpec("regression", 0, 2)
    assert torch.allclose(make_loss(plain)(outputs, targets), torch.tensor([13.0, 9.0]))
    with pytest.raises(ValueError, match="target_weights"):
        TrainConfig(models=["cnn1d"], targets=["a", "b"], target_weights=[1.0])
    with pytest.raises(ValueError, match="target_weights"):
        TrainConfig(models=["cnn1d"], target_weights=[1.0])  # weights need named targets


# ---- 8: head widths and norm, residual cnn1d/cnn2d, dropout per block, pin_memory -------------

def _hidden_linears(model):
    return [m for m in model.head.hidden if isinstance(m, torch.nn.Linear)]


def test_head_with_batch_norm_and_tapered_widths():
    model = create_model("cnn2d", 4, 16, head_layers=2, head_hidden=[64, 32],
                         head_norm="batch", activation="prelu", clip_pool="maxmean",
                         channels=[8, 16, 32, 64])  # 16 bands -> 1: 64 features, max and mean
    assert [(m.in_features, m.out_features) for m in _hidden_linears(model)] == \
        [(2 * 64, 64), (64, 32)]
    kinds = [type(m).__name__ for m in model.head.hidden]
    assert kinds == ["Dropout", "Linear", "FeatureBatchNorm", "PReLU"] * 2
    assert model.head.fc.in_features == 32
    assert model(torch.randn(3, 16, 40)).shape == (3, 4)
    # per-frame heads (attention pooling over (B, T, D)) take the batch norm too
    crnn = create_model("crnn", 4, 16, head_layers=1, head_hidden=[8], head_norm="batch")
    assert crnn(torch.randn(3, 16, 40)).shape == (3, 4)
    none = create_model("cnn1d", 4, 16, head_layers=1, head_norm="none")
    assert not any(isinstance(m, torch.nn.LayerNorm | torch.nn.BatchNorm1d)
                   for m in none.head.hidden)
    with pytest.raises(ValueError, match=r"models\.cnn2d\.head_hidden"):
        create_model("cnn2d", 4, 16, head_layers=3, head_hidden=[64, 32])


@pytest.mark.parametrize("name", ["cnn1d", "cnn2d"])
def test_residual_blocks_and_dropout_per_block(name):
    plain = create_model(name, 4, 16, channels=[8, 16])
    res = create_model(name, 4, 16, channels=[8, 16], residual=True)
    assert not any("Res" in type(m).__name__ for m in plain.modules())
    blocks = [m for m in res.features if "Res" in type(m).__name__]
    assert len(blocks) == 2 and res(torch.randn(2, 16, 40)).shape == (2, 4)
    assert "features.0.0.weight" in plain.state_dict()  # the checkpoint layout of before
    # dropout in every block: two training-mode passes differ only through it
    x = torch.randn(4, 16, 40)
    for residual in (False, True):
        still = create_model(name, 4, 16, channels=[8, 16], dropout=0.0, residual=residual)
        assert torch.equal(still.train()(x), still(x))
        drop = create_model(name, 4, 16, channels=[8, 16], dropout=0.0, residual=residual,
                            block_dropout=0.5)
        assert sum(isinstance(m, torch.nn.Dropout) for m in drop.features.modules()) == 2
        assert not torch.equal(drop.train()(x), drop(x))
        drop.eval()
        assert torch.equal(drop(x), drop(x))


def test_pin_memory_on_cuda_only(multi):
    data = FeatureSet(multi, ("valid",))
    pinned = _cfg(pin_memory=True)
    assert _loader(data, pinned, device=torch.device("cuda")).pin_memory
    assert not _loader(data, pinned, device=torch.device("cpu")).pin_memory
    assert not _loader(data, _cfg(), device=torch.device("cuda")).pin_memory


# ---- 4: dataset exploration; data.min_clips_per_class, data.merge_classes --------------------

def test_merge_classes_then_drop_rare_ones():
    manifest = pd.DataFrame({
        "clip_id": [f"c{i}" for i in range(8)],
        "labels": ["rock", "punk", "punk;jazz", "jazz", "polka", "rock;polka", "jazz", "rock"],
        "true_labels": ["rock", "punk", "punk", "jazz", "polka", "rock", "jazz", "rock"],
        "subset": ["curated"] * 6 + ["test"] * 2})
    classes = ["rock", "punk", "jazz", "polka"]
    out, kept = reshape_classes(manifest, classes, merge={"punk": "rock"}, min_clips=3)
    # punk -> rock (4 clips with rock), jazz 3, polka 2 < 3: dropped; clip c4 (polka only) goes
    assert kept == ["rock", "jazz"]
    assert out["clip_id"].tolist() == ["c0", "c1", "c2", "c3", "c5", "c6", "c7"]
    assert out["labels"].tolist() == ["rock", "rock", "rock;jazz", "jazz", "rock", "jazz", "rock"]
    assert out["true_labels"].tolist() == ["rock", "rock", "rock", "jazz", "rock", "jazz", "rock"]
    same, same_classes = reshape_classes(manifest, classes, merge={}, min_clips=0)
    assert same.equals(manifest) and same_classes == classes
    with pytest.raises(DataSourceError, match=r"data\.merge_classes\.blues"):
        reshape_classes(manifest, classes, merge={"blues": "rock"}, min_clips=0)
    with pytest.raises(DataSourceError, match=r"data\.min_clips_per_class"):
        reshape_classes(manifest, classes, merge={}, min_clips=100)  # nothing left


def test_dataset_exploration_is_written(tmp_path):
    root = tmp_path
    df, _ = write_tone_dataset(root / "raw", counts=(("curated", 12), ("noisy", 6), ("test", 6)))
    manifest, classes = read_manifest(root / "raw")
    extract_features(manifest, classes, root / "raw", root / "features", FEATURES,
                     SplitConfig(valid_fold=0))
    summary = explore_dataset(root / "raw", root / "features", root / "data.json",
                              root / "plots", examples_per_class=2)
    saved = json.loads((root / "data.json").read_text())
    assert saved == summary
    for subset in ("curated", "noisy", "test"):
        durations = df.loc[df["subset"] == subset, "duration_s"]
        stats = saved["duration_s"][subset]
        assert stats["median"] == pytest.approx(durations.median(), abs=1e-3)
        assert stats["min"] <= stats["median"] <= stats["max"]
        assert saved["clips"][subset] == len(durations)
    counts = pd.read_csv(root / "plots/class_counts.csv")
    assert counts.columns.tolist() == ["class", "curated", "noisy", "test", "total"]
    for subset in ("curated", "noisy", "test"):
        rows = df[df["subset"] == subset]
        for name, n in zip(counts["class"], counts[subset], strict=True):
            assert n == rows["labels"].str.split(";").apply(lambda ls, c=name: c in ls).sum()
    assert (counts["total"] == counts[["curated", "noisy", "test"]].sum(axis=1)).all()
    for png in ("class_histogram.png", "durations.png", "examples.png"):
        assert (root / "plots" / png).stat().st_size > 1000, png
    # issue 34 item 7: frames per clip, as the model sees them and as stored per subset
    frames = saved["frames_per_clip"]
    hop = FEATURES.hop_length / FEATURES.sample_rate
    assert frames["frame_seconds"] == pytest.approx(hop)
    assert frames["model_input"] == json.loads(
        (root / "features/features.json").read_text())["frames"]
    index = pd.read_csv(root / "features/index.csv")
    for subset in ("curated", "noisy", "test"):
        lengths = index.loc[index["subset"] == subset, "length"]
        assert frames["stored"][subset] == {"min": lengths.min(), "median": lengths.median(),
                                            "max": lengths.max()}


# ---- 5: swin_v2_t in the zoo -------------------------------------------------------------------

def test_swin_v2_t_is_a_zoo_backbone_under_the_parameter_cap(tmp_path):
    from torchvision.models import swin_v2_t

    torch.manual_seed(0)
    model = create_model("swin_v2_t", 4, 16)  # random init: nothing is downloaded
    n = sum(p.numel() for p in model.parameters())
    assert 25e6 < n < MAX_PARAMETERS
    out = model(torch.randn(2, 16, 24))  # tiny input: smaller than one attention window
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    # a torchvision state_dict from a local file loads (3-channel patch embedding summed)
    torch.save(swin_v2_t(weights=None).state_dict(), tmp_path / "swin.pth")
    loaded = create_model("swin_v2_t", 4, 16, pretrained_weights=str(tmp_path / "swin.pth"),
                          freeze_backbone=True)
    assert loaded.backbone.features[0][0].weight.shape[1] == 1
    assert not any(p.requires_grad for p in loaded.backbone.parameters())


# ---- 6: init_from one checkpoint per branch (mixnet) -------------------------------------------

def test_mixnet_initialised_from_a_trained_cnn1d_and_cnn2d(tmp_path):
    torch.manual_seed(0)
    wave = create_model("cnn1d", 3, 1, channels=[32, 64, 128])  # on waveforms: strided stem
    spec = create_model("cnn2d", 3, 64, channels=[16, 32, 64])
    for name, model in (("wave", wave), ("spec", spec)):
        save_checkpoint(tmp_path / f"{name}.pt", model,
                        {"model_name": name, "model_params": {}, "num_classes": 3, "n_mels": 1})
    mix = create_model("mixnet", 5, 1)
    head_before = mix.head.fc.weight.clone()
    cfg = _cfg(init_from={"wave": str(tmp_path / "wave.pt"), "spec": str(tmp_path / "spec.pt")},
               freeze_init=True)
    loaded, _ = init_from_checkpoints(mix, "mixnet", cfg)
    assert torch.equal(mix.wave_stem[0].weight, wave.stem[0].weight)
    assert torch.equal(mix.wave_blocks[2][0].weight, wave.features[2][0].weight)
    assert torch.equal(mix.wave_stem[1].running_var, wave.stem[1].running_var)
    assert torch.equal(mix.spec_blocks[1][0].weight, spec.features[1][0].weight)
    assert torch.equal(mix.head.fc.weight, head_before)  # the fused head starts fresh
    assert not mix.wave_stem[0].weight.requires_grad and mix.head.fc.weight.requires_grad
    assert any(k.startswith("spec_blocks.") for k in loaded)
    with pytest.raises(ParamsError, match=r"train\.init_from\.waves: .*wave, spec"):
        init_from_checkpoints(mix, "mixnet", _cfg(init_from={"waves": "x.pt"}))
    with pytest.raises(ParamsError, match=r"train\.init_from: cnn2d has no branches"):
        init_from_checkpoints(spec, "cnn2d", _cfg(init_from={"spec": "x.pt"}))


# ---- 3: label co-occurrence per subset ---------------------------------------------------------

def test_cooccurrence_per_subset_and_the_pairs_noisier_than_curated():
    index = pd.DataFrame({
        "labels": ["run;walk", "run", "walk", "bark;walk",
                   "run;walk", "run;walk", "run;walk", "bark"],
        "subset": ["curated"] * 4 + ["noisy"] * 4})
    classes = ["run", "walk", "bark"]
    matrices, pairs = label_cooccurrence(index, classes)
    # per subset: share of the clips with row class that also carry the column class
    assert matrices["curated"].loc["run", "walk"] == pytest.approx(1 / 2)
    assert matrices["noisy"].loc["run", "walk"] == pytest.approx(1.0)
    assert matrices["noisy"].loc["bark", "walk"] == 0.0
    assert matrices["curated"].loc["walk", "walk"] == 1.0
    # pairs: share of the subset's clips carrying both; noisy above curated listed, worst first
    assert pairs[["a", "b"]].values.tolist() == [["run", "walk"]]
    row = pairs.iloc[0]
    assert row["curated"] == pytest.approx(0.25) and row["noisy"] == pytest.approx(0.75)
    assert row["excess"] == pytest.approx(0.5)


def test_clean_labels_writes_the_cooccurrence_plot_and_pairs(multi, tmp_path):
    metrics = clean_labels(multi, tmp_path / "clean", tmp_path / "labels.json",
                           tmp_path / "plots/flagged.csv", CleanConfig(method="none"), 0,
                           details_path=tmp_path / "details.json",
                           cooccurrence_plot=tmp_path / "plots/cooccurrence.png")
    assert (tmp_path / "plots/cooccurrence.png").stat().st_size > 1000
    pairs = pd.read_csv(tmp_path / "clean/cooccurrence_pairs.csv")
    assert list(pairs.columns) == ["a", "b", "curated", "noisy", "excess"]
    assert (pairs["excess"] > 0).all()
    # a list of pairs: a detail, not a headline number of `dvc metrics show`
    assert "cooccurrence_noisy_excess" not in json.loads((tmp_path / "labels.json").read_text())
    saved = json.loads((tmp_path / "details.json").read_text())
    assert saved["cooccurrence_noisy_excess"] == metrics["cooccurrence_noisy_excess"]
    assert len(saved["cooccurrence_noisy_excess"]) == min(len(pairs), 10)


def test_the_report_lists_the_pairs_noisier_than_curated(tmp_path):
    from audiotag.analysis.report import _data_markdown

    (tmp_path / "details").mkdir()
    (tmp_path / "details" / "labels.json").write_text(json.dumps({
        "clips": {"curated": 4, "noisy": 4},
        "cooccurrence_noisy_excess": [{"pair": "run + walk", "curated": 0.25, "noisy": 0.75}]}))
    text = "\n".join(_data_markdown(tmp_path))
    assert "| run + walk | 0.250 | 0.750 |" in text


# ---- 9: activation maps and saliency in the weights stage -----------------------------------

def test_saliency_is_the_input_gradient_of_the_top_class():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4 * 5, 3))
    x = torch.randn(2, 4, 5)
    saliency, top, _ = input_saliency(model, x)
    assert torch.equal(top, model(x).argmax(dim=1))
    for i in range(2):  # linear model: d logit_k / dx = row k of the weight
        expected = model[1].weight[top[i]].detach().abs().view(4, 5)
        assert torch.allclose(saliency[i], expected)


def test_weights_stage_draws_saliency_and_activation_maps(multi, tmp_path):
    _train(multi, tmp_path, _cfg(epochs=1))
    cfg = WeightsConfig(saliency_clips=3)
    analyse_weights(tmp_path / "model", multi, tmp_path / "w.json", tmp_path / "plots", cfg)
    for png in ("saliency.png", "activation_maps.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 1000, png
    model, _ = load_checkpoint(tmp_path / "model/model.pt")
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv1d)]
    # issue 34 item 9: a figure per conv layer (weights.layer_views: 0 = every one)
    views = sorted(p.name for p in (tmp_path / "plots/layers").iterdir())
    assert views == [layer_view_name(i, n) for i, n in enumerate(convs)]
    maps = activation_maps(model, torch.randn(2, 16, 63))
    assert [m["layer"] for m in maps] == convs
    for m in maps:  # per clip, a channel x time map of the activation and its gradient
        assert m["activation"].shape == m["gradient"].shape and m["activation"].shape[0] == 2
        assert m["gradient"].abs().sum() > 0
