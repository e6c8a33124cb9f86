"""Label cleaning: detection finds known flips, actions, untouched subsets, params errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from audiotag.cleaning.config import CLEAN_MOVED, CleanConfig, parse_clean
from audiotag.cleaning.detect import bce_per_clip, clip_lwlrap
from audiotag.cleaning.run import (
    apply_action,
    clean_labels,
    detection_scores,
    suggest_labels,
    suspect_class,
)
from audiotag.core.errors import ParamsError
from audiotag.core.params import parse_group, read_params, set_dotted
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import labels_to_matrix, read_manifest, write_manifest
from audiotag.features.config import FeaturesConfig
from audiotag.features.store import FeatureSet, extract_features, read_labels, relabel_index
from audiotag.metrics.lwlrap import lwlrap
from audiotag.models import validate_model_params
from audiotag.training.config import TrainConfig

CLASSES = ["low", "mid", "high", "buzz"]
FREQS = {"low": 300.0, "mid": 900.0, "high": 2500.0, "buzz": 150.0}
SR = 8000
BASE = {"n_folds": 3, "filter_by": "prune_by_noise_rate"}
# a small store and a small, quick detector (the registered cnn1d, trained like train@cnn1d)
FEATURES = FeaturesConfig(sample_rate=SR, n_fft=256, hop_length=128, n_mels=32, fmax=4000.0,
                          clip_seconds=1.5, workers=0, eval_crops="center")
DETECTOR_TRAIN = TrainConfig(models=["cnn1d"], epochs=10, batch_size=16, lr=0.005,
                             lsoft_beta=1.0, patience=10, threads=1, train_score_clips=0)
DETECTOR = validate_model_params("cnn1d", {"channels": [16, 16, 32]}).model_dump()


def _clip(labels: list[str], rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(rng.uniform(0.6, 1.4) * SR)) / SR
    wave = 0.02 * rng.standard_normal(len(t))
    for name in labels:
        if name == "buzz":  # square-ish wave: many harmonics
            wave += 0.2 * np.sign(np.sin(2 * np.pi * FREQS[name] * t))
        else:
            wave += 0.3 * np.sin(2 * np.pi * FREQS[name] * t + rng.uniform(0, 6))
    return (wave / max(1.0, np.abs(wave).max())).astype(np.float32)


def _flip(labels: list[str], rng: np.random.Generator) -> list[str]:
    """Swap one label for a class the clip does not have (always a different set)."""
    absent = [c for c in CLASSES if c not in labels]
    out = list(labels)
    out[int(rng.integers(len(out)))] = str(rng.choice(absent))
    return sorted(out, key=CLASSES.index)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """Tone clips: 48 curated (12 validate), 64 noisy (16 flipped, known via true_labels),
    12 test, as a feature store; returns the store and its training clips' index rows."""
    root = tmp_path_factory.mktemp("raw")
    rng = np.random.default_rng(7)
    (root / "audio").mkdir()
    flipped = set(rng.choice(64, size=16, replace=False).tolist())
    rows = []
    for subset, n in (("curated", 48), ("noisy", 64), ("test", 12)):
        for i in range(n):
            true = sorted(rng.choice(CLASSES, size=int(rng.integers(1, 3)), replace=False),
                          key=CLASSES.index)
            wave = _clip(true, rng)
            given = _flip(true, rng) if subset == "noisy" and i in flipped else true
            clip_id = f"{subset}_{i:03d}"
            sf.write(root / "audio" / f"{clip_id}.wav", wave, SR, subtype="PCM_16")
            rows.append({"clip_id": clip_id, "path": f"audio/{clip_id}.wav",
                         "labels": ";".join(given), "subset": subset,
                         "fold": -1 if subset == "test" else i % 4,
                         "duration_s": len(wave) / SR, "sample_rate": SR,
                         "true_labels": ";".join(true)})
    write_manifest(pd.DataFrame(rows), CLASSES, root)
    store = tmp_path_factory.mktemp("store") / "features"
    extract_features(read_manifest(root)[0], CLASSES, root, store, FEATURES,
                     SplitConfig(valid_fold=0))
    return store, FeatureSet(store, ("train",)).index


def _clean(**flat) -> CleanConfig:
    """A CleanConfig from flat keyword settings (``flagged_weight=0.1`` goes to its block)."""
    nested: dict = {}
    for key, value in flat.items():
        set_dotted(nested, CLEAN_MOVED.get(key, key), value)
    return CleanConfig.model_validate(nested)


def _run(dataset, tmp_path, train=None, **params):
    """Clean (``train``: overrides of the detector's training); returns the metrics, the
    training clips as training reads them (the store's rows relabelled by labels.csv) and
    label_issues.csv."""
    store, part = dataset
    cfg = _clean(**{**BASE, **params})
    out = tmp_path / "clean"
    metrics = clean_labels(store, out, tmp_path / "labels.json",
                           tmp_path / "plots" / "flagged.csv", cfg, 0,
                           DETECTOR_TRAIN.model_copy(update=train or {}), DETECTOR)
    cleaned = relabel_index(part, read_labels(out / "labels.csv"))
    return metrics, cleaned, pd.read_csv(out / "label_issues.csv", keep_default_na=False)


def _assert_untouched(raw: pd.DataFrame, cleaned: pd.DataFrame) -> None:
    """Curated rows leave exactly as they came in, with weight 1."""
    cols = [c for c in raw.columns if c != "weight"]
    before = raw.loc[raw["subset"] == "curated", cols].reset_index(drop=True)
    after = cleaned.loc[cleaned["subset"] == "curated", cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)
    assert (cleaned.loc[cleaned["subset"] == "curated", "weight"] == 1.0).all()


# ----------------------------------------------------------------- detection, end to end


# measured (seed 0): cleanlab precision 0.79, recall 0.69; agreement 1.0, 1.0 (a flagger at
# random has precision 0.25 here)
@pytest.mark.parametrize("method, recall", [("cleanlab", 0.6), ("agreement", 0.8)])
def test_detection_finds_most_known_flips(dataset, tmp_path, method, recall) -> None:
    metrics, cleaned, issues = _run(dataset, tmp_path, method=method, action="drop",
                                    threshold=0.9)
    assert metrics["detection_recall"] >= recall, metrics
    assert metrics["detection_precision"] >= 0.7, metrics
    assert metrics["noise_rate_after"] < metrics["measured_noise_rate"] == 0.25
    assert metrics["flagged"] == len(issues) == 64 - (cleaned["subset"] == "noisy").sum()
    assert set(issues["clip_id"]) <= {f"noisy_{i:03d}" for i in range(64)}
    _assert_untouched(dataset[1], cleaned)


def test_default_detection_reaches_a_high_f1(dataset, tmp_path) -> None:
    """The default detector (cleanlab, confident_learning) on clips with 16 known flips
    (measured F1 0.69 at seed 0, 0.75 ± 0.10 over seeds 0-4; flagging at random: 0.25)."""
    metrics, cleaned, _ = _run(dataset, tmp_path, method="cleanlab", action="weight",
                               filter_by="confident_learning")
    assert metrics["detection_f1"] >= 0.6, metrics
    # measured 0.17 of the noisy clips' weight still wrong, from 0.25
    assert metrics["noise_rate_after"] < 0.8 * metrics["measured_noise_rate"], metrics
    _assert_untouched(dataset[1], cleaned)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_gpu_names_the_detector_device(dataset, tmp_path) -> None:
    with pytest.raises(RuntimeError, match=re.escape("clean.detector.train.device is 'cuda'")):
        _run(dataset, tmp_path, method="cleanlab", train={"device": "cuda"})
    assert not (tmp_path / "clean").exists()  # nothing half-written


def test_outputs_are_grouped_by_class_and_reported(dataset, tmp_path) -> None:
    metrics, _, issues = _run(dataset, tmp_path, method="cleanlab", action="keep")
    assert list(issues.columns[:5]) == ["class", "clip_id", "labels", "suggested_labels",
                                         "score"]
    order = issues["class"].map(CLASSES.index).to_numpy()
    assert (np.diff(order) >= 0).all()  # grouped by class, in class-list order
    assert issues.groupby("class")["score"].apply(lambda s: s.is_monotonic_increasing).all()
    plot = pd.read_csv(tmp_path / "plots" / "flagged.csv")
    assert list(plot["class"]) == CLASSES and plot["flagged"].sum() == metrics["flagged"]
    assert metrics["flagged_per_class"] == dict(zip(CLASSES, plot["flagged"], strict=True))
    assert metrics["fraction_kept"] == 1.0  # keep: report only
    written = json.loads((tmp_path / "labels.json").read_text())  # headline numbers only
    assert written == {k: v for k, v in metrics.items() if k not in (
        "clips", "flagged_per_class", "cooccurrence_noisy_excess")}
    assert metrics["clips"] == {"curated": 48, "noisy": 64, "test": 12}
    stats = pd.read_csv(tmp_path / "clean" / "label_stats.csv")  # every clip, every subset
    assert stats["noisy"].sum() == sum(len(x.split(";")) for x in
                                       dataset[1].query("subset == 'noisy'")["labels"])


def test_loss_flags_the_requested_fraction(dataset, tmp_path) -> None:
    metrics, cleaned, _ = _run(dataset, tmp_path, method="loss", loss_fraction=0.25,
                               action="weight", flagged_weight=0.1)
    assert metrics["flagged"] == 16 and metrics["detection_recall"] >= 0.7, metrics
    noisy = cleaned[cleaned["subset"] == "noisy"]
    assert sorted(noisy["weight"].unique()) == [0.1, 1.0] and (noisy["weight"] == 0.1).sum() == 16
    _assert_untouched(dataset[1], cleaned)


def test_none_keeps_every_label(dataset, tmp_path) -> None:
    metrics, cleaned, issues = _run(dataset, tmp_path, method="none")
    assert metrics["flagged"] == 0 and len(issues) == 0 and metrics["fraction_kept"] == 1.0
    pd.testing.assert_frame_equal(dataset[1], cleaned.drop(columns="weight"))
    assert (cleaned["weight"] == 1.0).all()
    assert metrics["noise_rate_after"] == metrics["measured_noise_rate"] == 0.25


@pytest.mark.parametrize("action", ["relabel", "drop"])
def test_oracle_flags_exactly_the_corrupted_clips(dataset, tmp_path, action) -> None:
    """``oracle``: the true labels where the source knows them; no detector trains."""
    metrics, cleaned, issues = _run(dataset, tmp_path, method="oracle", action=action,
                                    train={"device": "cuda"})  # would fail if it trained
    assert metrics["detection_precision"] == metrics["detection_recall"] == 1.0, metrics
    assert metrics["flagged"] == 16 and metrics["noise_rate_after"] == 0.0
    noisy = cleaned[cleaned["subset"] == "noisy"]
    assert (noisy["labels"] == noisy["true_labels"]).all()
    assert len(noisy) == (64 if action == "relabel" else 48)
    assert (issues["suggested_labels"] == issues["true_labels"]).all()


def test_oracle_without_true_labels_names_the_param(dataset, tmp_path) -> None:
    store = tmp_path / "store"
    shutil.copytree(dataset[0], store)
    index = pd.read_csv(store / "index.csv", keep_default_na=False)
    index.drop(columns="true_labels").to_csv(store / "index.csv", index=False)
    with pytest.raises(ParamsError, match=r"clean\.method=oracle needs the true labels.*"
                                          r"index\.csv has none"):
        clean_labels(store, tmp_path / "clean", tmp_path / "m.json", tmp_path / "p.csv",
                     CleanConfig(method="oracle"), 0)
    assert not (tmp_path / "clean").exists() and not (tmp_path / "m.json").exists()


def test_same_seed_same_outputs(dataset, tmp_path) -> None:
    first = _run(dataset, tmp_path / "a", method="cleanlab", action="keep", train={"epochs": 2})
    second = _run(dataset, tmp_path / "b", method="cleanlab", action="keep", train={"epochs": 2})
    assert first[0] == second[0]
    pd.testing.assert_frame_equal(first[2], second[2])


# ----------------------------------------------------------------------------- actions


def _toy() -> tuple[pd.DataFrame, np.ndarray]:
    df = pd.DataFrame({
        "clip_id": ["c0", "n0", "n1", "n2", "t0"], "path": ["a.wav"] * 5,
        "labels": ["low", "mid", "high", "low;mid", "high"],
        "subset": ["curated", "noisy", "noisy", "noisy", "test"],
        "fold": [0, 0, 1, 2, -1], "duration_s": [1.0] * 5, "sample_rate": [SR] * 5})
    return df, np.array([1, 2, 3])


@pytest.mark.parametrize("action, labels, weights, kept", [
    ("drop", ["low", "mid", "low;mid", "high"], [1.0] * 4, ["c0", "n0", "n2", "t0"]),
    ("relabel", ["low", "mid", "buzz", "low;mid", "high"], [1.0] * 5, None),
    ("weight", ["low", "mid", "high", "low;mid", "high"], [1.0, 1.0, 0.25, 1.0, 1.0], None),
    ("keep", ["low", "mid", "high", "low;mid", "high"], [1.0] * 5, None),
])
def test_each_action_gives_the_expected_manifest(action, labels, weights, kept) -> None:
    df, rows = _toy()
    cfg = _clean(method="cleanlab", action=action, flagged_weight=0.25)
    flagged = np.array([False, True, False])
    out = apply_action(df, rows, flagged, ["mid", "buzz", "low"], cfg)
    assert list(out["labels"]) == labels
    assert list(out["clip_id"]) == (kept or list(df["clip_id"]))
    assert list(out["weight"]) == weights
    _assert_untouched(df.assign(weight=1.0), out)
    assert list(df["labels"]) == ["low", "mid", "high", "low;mid", "high"]  # input unchanged


# --------------------------------------------------------------------------- the pieces


def test_suggested_labels_are_the_smallest_confident_edit() -> None:
    given = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32)
    proba = np.array([[0.6, 0.9, 0.1],   # keep the doubtful given label, add a confident one
                      [0.9, 0.1, 0.2],   # drop a confidently absent given label
                      [0.2, 0.4, 0.05]])  # nothing left: the most probable class
    out = suggest_labels(given, proba, threshold=0.8)
    np.testing.assert_array_equal(out, [[1, 1, 0], [1, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(suspect_class(given, proba), [1, 1, 2])


def test_clip_lwlrap_matches_the_metric_clip_by_clip() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((30, 6)) < 0.3).astype(np.float32)
    truth[:, 0] = np.maximum(truth[:, 0], truth.sum(axis=1) == 0)
    scores = rng.random((30, 6))
    per_clip = clip_lwlrap(truth, scores)
    for i in range(30):
        assert per_clip[i] == pytest.approx(lwlrap(truth[i:i + 1], scores[i:i + 1]))
    assert np.isnan(clip_lwlrap(np.zeros((1, 6)), scores[:1]))[0]


def test_detection_scores_and_loss() -> None:
    flagged = np.array([True, True, False, False])
    corrupted = np.array([True, False, True, False])
    assert detection_scores(flagged, corrupted) == {
        "detection_precision": 0.5, "detection_recall": 0.5, "detection_f1": 0.5}
    assert detection_scores(np.zeros(4, bool), corrupted)["detection_f1"] == 0.0
    truth = np.array([[1.0, 0.0]])
    assert bce_per_clip(truth, np.array([[0.9, 0.1]]))[0] < bce_per_clip(
        truth, np.array([[0.1, 0.9]]))[0]


# ------------------------------------------------------------------------------ params


@pytest.mark.parametrize("group, key", [
    ({"flag": {"threshold": 1.5}}, "clean.flag.threshold"),
    ({"method": "magic"}, "clean.method"),
    ({"action": "burn"}, "clean.action"),
    ({"detector": {"n_folds": 1}}, "clean.detector.n_folds"),
    ({"fix": {"relabel_threshold": 0.3}}, "clean.fix.relabel_threshold"),
    ({"flag": {"max_per_class": 0}}, "clean.flag.max_per_class"),
    ({"fix": {"flagged_weight": -1}}, "clean.fix.flagged_weight"),
    ({"detector": {"crop_aggregate": "median"}}, "clean.detector.crop_aggregate"),
    ({"treshold": 0.5}, "clean.treshold"),
    ({"model": "cnn1d"}, "clean.model"),  # the old fast-model keys are gone
])
def test_bad_params_name_the_key(group, key) -> None:
    with pytest.raises(ParamsError, match=re.escape(f"params.yaml: {key}: ")):
        parse_group({"clean": group}, "clean", CleanConfig)


def test_clean_params_are_nested_by_role(repo_root) -> None:
    """Issue 22: ``clean`` holds the two switches and one block per role: the detector that
    scores clips, how many are flagged, how the action treats a flagged clip."""
    raw = read_params(repo_root / "params.yaml")
    assert set(raw["clean"]) == {"method", "action", "detector", "flag", "fix"}
    cfg, train, params = parse_clean(raw)
    assert (cfg.detector.model, cfg.detector.n_folds, cfg.detector.crop_aggregate) == (
        "cnn1d", 5, "mean")
    assert cfg.flag.filter_by == "confident_learning" and cfg.flag.loss_fraction == 0.3
    assert cfg.fix.relabel_threshold == 0.5 and cfg.fix.flagged_weight == 0.3
    assert train.epochs == cfg.detector.train["epochs"] == 12


@pytest.mark.parametrize("group, message", [
    ({"threshold": 0.5}, "clean.threshold: moved to clean.flag.threshold"),
    ({"detector_train": {}}, "clean.detector_train: moved to clean.detector.train"),
    ({"flagged_weight": 0.3}, "clean.flagged_weight: moved to clean.fix.flagged_weight"),
    ({"detector": "cnn1d"}, "clean.detector: Value error, a block of settings: the model is "
                            "clean.detector.model (detector: {model: cnn1d})"),
    ({"flag": {"treshold": 0.5}},
     "clean.flag.treshold: unknown key; did you mean clean.flag.threshold?"),
])
def test_a_flat_or_misspelt_clean_key_names_its_place(group, message) -> None:
    with pytest.raises(ParamsError, match=re.escape(f"params.yaml: {message}")):
        parse_group({"clean": group}, "clean", CleanConfig)


def test_stage_stops_on_bad_params_before_writing(dataset, tmp_path, repo_root) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("seed: 1\nclean:\n  method: cleanlab\n  flag: {threshold: -0.5}\n")
    result = subprocess.run(
        [sys.executable, str(repo_root / "stages/clean_labels.py"), "--features", str(dataset[0]),
         "--out", str(tmp_path / "clean"), "--metrics", str(tmp_path / "m.json"),
         "--plot", str(tmp_path / "p.csv"), "--params", str(params)],
        capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "clean.flag.threshold" in result.stderr
    assert not (tmp_path / "clean").exists() and not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("clean, message", [
    ({"model": "cnn3d"}, r"clean\.detector\.model: unknown model 'cnn3d'; did you mean cnn\dd\?"),
    ({"train": {"epochz": 3}}, r"clean\.detector\.train\.epochz: unknown key; "
                               r"did you mean clean\.detector\.train\.epochs\?"),
    ({"train": {"lr": -1}}, r"clean\.detector\.train\.lr: "),
    ({"params": {"kernel_size": 4}},
     r"models\.cnn1d\.kernel_size.*clean\.detector\.params"),
])
def test_bad_detector_settings_name_the_key(clean, message) -> None:
    with pytest.raises(ParamsError, match=message):
        parse_clean({"clean": {"detector": clean}})


@pytest.mark.parametrize("key, value", [
    ("train_score_clips", 16), ("overfit_batches", 2), ("init_from", "models/cnn1d/model.pt"),
    ("freeze_init", True), ("processes", 2), ("nodes", 2), ("rdzv_endpoint", "h:29500"),
    ("sync_batchnorm", True), ("max_restarts", 2), ("targets", ["n_events"]),
    ("regression_weight", 2.0), ("target_weights", {"n_events": 1.0}),
    ("task", "regression"), ("task", "multitask"),
])
def test_a_train_key_the_detector_cannot_honour_is_refused_by_name(key, value) -> None:
    """Issue 31 item 2: a clean.detector.train key that the recipe cannot honour for the
    detector stops check_params naming it, instead of being silently ignored."""
    with pytest.raises(ParamsError, match=rf"params\.yaml: clean\.detector\.train\.{key}: "
                                          r"the detector's run cannot honour it"):
        parse_clean({"clean": {"detector": {"train": {key: value}}}})
    _, train, _ = parse_clean({"clean": {"detector": {"train": {"epochs": 2}}}})
    assert train.train_score_clips == 0 and train.processes == 1  # what it runs with


@pytest.mark.parametrize("update", [{"train_score_clips": 8}, {"overfit_batches": 1},
                                    {"init_from": "x.pt"}])
def test_the_detectors_run_refuses_a_config_it_cannot_honour(dataset, update) -> None:
    from audiotag.training.oof import fit_predict

    with pytest.raises(ValueError, match=f"cannot honour train.{next(iter(update))}"):
        fit_predict(dataset[0], "cnn1d", DETECTOR, DETECTOR_TRAIN.model_copy(update=update),
                    0, np.arange(4), np.arange(2))


def test_the_detector_honours_the_train_keys_the_recipe_serves(dataset, caplog) -> None:
    """Keys once ignored by the detector's own assembly (sampler, aug_*, num_workers,
    finetune_curated_epochs) now reach its run: they change its probabilities (or add its
    fine-tuning epoch), and num_workers (loading only) does not."""
    from audiotag.training.oof import fit_predict

    store, part = dataset
    curated = np.flatnonzero(part["subset"].to_numpy() == "curated")
    noisy = np.flatnonzero(part["subset"].to_numpy() == "noisy")

    def proba(**update):
        cfg = DETECTOR_TRAIN.model_copy(update={"epochs": 2, **update})
        return fit_predict(store, "cnn1d", DETECTOR, cfg, 0, np.concatenate([curated, noisy]),
                           noisy[:6])

    plain = proba()
    assert np.array_equal(proba(num_workers=2), plain)
    assert not np.array_equal(proba(sampler="balanced"), plain)
    assert not np.array_equal(proba(aug_gain_db=6.0), plain)
    with caplog.at_level("INFO", logger="audiotag.training.loop"):
        proba(finetune_curated_epochs=1)
    assert "fine-tuning on curated clips from epoch 3" in caplog.text


def test_the_detector_is_train_at_s_recipe_but_for_its_clips(dataset, monkeypatch,
                                                              tmp_path) -> None:
    """One trainer (issue 31): the Recipe the detector's run is built from equals the one
    train_model (train@) builds for the same settings, but for which clips train; so its
    assembly, windows, aggregation and best-epoch rule are train@'s."""
    from dataclasses import replace

    from audiotag.training import oof, run
    from audiotag.training.recipe import StoreClips

    store, part = dataset
    built = []

    def record(recipe, *args):
        built.append(recipe)
        raise KeyboardInterrupt  # the recipe is all this test wants

    monkeypatch.setattr(oof, "build_run", record)
    monkeypatch.setattr(run, "_train", record)
    rows = np.flatnonzero(part["subset"].to_numpy() == "curated")
    with pytest.raises(KeyboardInterrupt):
        oof.fit_predict(store, "cnn1d", DETECTOR, DETECTOR_TRAIN, 3, rows, rows[:2])
    with pytest.raises(KeyboardInterrupt):
        run.train_model("cnn1d", DETECTOR, store, tmp_path / "m", tmp_path / "l",
                        DETECTOR_TRAIN, 3)
    detector, train_at = built
    assert detector.clips == StoreClips(rows=tuple(rows.tolist()))
    assert train_at.clips == StoreClips()
    assert replace(detector, clips=StoreClips()) == train_at


def test_the_detector_folds_are_cv_s_stratified_folds(dataset, monkeypatch) -> None:
    """The detector's out-of-fold folds are cv's (iterative stratification within each
    subset, seeded), not a random permutation: every fold holds every class of a subset
    that has at least n_folds clips of it."""
    from audiotag.cleaning import detect as detect_module
    from audiotag.data.split import assign_folds
    from audiotag.training import oof

    store, part = dataset
    seen = {}

    def fake_oof(store, name, params, cfg, seed, folds, crop_aggregate):
        seen["folds"] = folds
        return np.full((len(folds), len(CLASSES)), 0.5)

    monkeypatch.setattr(oof, "out_of_fold_proba", fake_oof)
    cfg, train_cfg, params = parse_clean({"clean": {"method": "loss",
                                                    "detector": {"n_folds": 3}}})
    detect_module.detect(store, part, CLASSES, cfg, 7, train_cfg, params)
    assert np.array_equal(seen["folds"], assign_folds(part, CLASSES, 3, 7, key="k"))
    y = labels_to_matrix(part["labels"], CLASSES)
    for subset in ("curated", "noisy"):
        rows = part["subset"].to_numpy() == subset
        for c in np.flatnonzero(y[rows].sum(axis=0) >= 3):
            assert all(y[rows & (seen["folds"] == k), c].sum() > 0 for k in range(3))
    with pytest.raises(ParamsError, match=r"clean\.detector\.n_folds=\d+: "):
        detect_module.detect(store, part, CLASSES, cfg.model_copy(update={
            "detector": cfg.detector.model_copy(update={"n_folds": len(part) + 1})}),
            7, train_cfg, params)


def test_detector_settings_are_its_own_not_train() -> None:
    """``detector.train`` goes over the built-in train defaults, not over params' train.*
    (a training experiment must not re-run cleaning); ``detector.params`` over models.<name>."""
    raw = {"train": {"models": ["crnn"], "lr": 0.5, "epochs": 40},
           "models": {"cnn2d": {"dropout": 0.4, "channels": [8, 16]}},
           "clean": {"detector": {"model": "cnn2d", "train": {"epochs": 3},
                                  "params": {"channels": [4, 8]}}}}
    cfg, train, params = parse_clean(raw)
    assert cfg.detector.model == "cnn2d" and train.epochs == 3
    assert train.lr == TrainConfig(models=["x"]).lr and train.processes == 1
    assert params["dropout"] == 0.4 and params["channels"] == [4, 8]


def test_training_reads_the_labels_file(dataset, tmp_path) -> None:
    """The train stage's view: clips the file lists, with its labels and weights."""
    store, part = dataset
    table = part[["clip_id", "labels"]].assign(weight=1.0).iloc[1:].copy()  # first: dropped
    table.iloc[0, 1] = "buzz"
    table.iloc[1, 2] = 0.25
    table.to_csv(tmp_path / "labels.csv", index=False)
    data = FeatureSet(store, ("train",), labels=read_labels(tmp_path / "labels.csv"))
    assert data.clip_ids == part["clip_id"].tolist()[1:]
    assert data.targets[0].tolist() == [0, 0, 0, 1] and data.loss_weights[1] == 0.25
    assert data.loss_weights[0] == 1.0 and len(data) == len(part) - 1
    bad = [(table.assign(clip_id=["nope"] + table["clip_id"].tolist()[1:]),
            r"row 2: clip 'nope' is not one of the feature store's clips"),
           (pd.concat([table, table.iloc[:1]]), r"row \d+: clip '\w+' is listed twice"),
           (table.assign(weight=["x"] + [1.0] * (len(table) - 1)), r"row 2: weight 'x'"),
           (table.drop(columns="weight"), r"no column 'weight'")]
    for frame, message in bad:
        frame.to_csv(tmp_path / "bad.csv", index=False)
        with pytest.raises(ValueError, match=re.escape(str(tmp_path / "bad.csv")) + ": "
                           + message):
            FeatureSet(store, ("train",), labels=read_labels(tmp_path / "bad.csv"))


def test_labels_matrix_of_a_cleaned_manifest_round_trips(dataset, tmp_path) -> None:
    _, cleaned, _ = _run(dataset, tmp_path, method="cleanlab", action="relabel")
    noisy = cleaned[cleaned["subset"] == "noisy"]
    before = (labels_to_matrix(dataset[1].query("subset == 'noisy'")["labels"], CLASSES)
              != labels_to_matrix(dataset[1].query("subset == 'noisy'")["true_labels"], CLASSES))
    after = (labels_to_matrix(noisy["labels"], CLASSES)
             != labels_to_matrix(noisy["true_labels"], CLASSES))
    # the small detector fixes some (measured 11 of 16 still wrong, false flags included)
    assert after.any(axis=1).sum() <= 0.75 * before.any(axis=1).sum()
    _assert_untouched(dataset[1], cleaned)


# ------------------------------------------------------------------- threads (speed)


class _Threads(Exception):
    pass


def _record(threads: int) -> None:
    raise _Threads(threads)


def test_threads_params_reach_torch(monkeypatch, dataset, tmp_path) -> None:
    """train.threads, clean.detector.train.threads and evaluate.threads set torch's
    threads before any work (0 leaves torch's default)."""
    from audiotag.core import device
    from audiotag.evaluation import evaluate
    from audiotag.evaluation.config import EvaluateConfig
    from audiotag.training import oof, run

    calls: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    device.set_threads(0)
    device.set_threads(3)
    assert calls == [3]
    for module in (run, oof, evaluate):
        monkeypatch.setattr(module, "set_threads", _record)
    store, _ = dataset
    with pytest.raises(_Threads, match="2"):
        run.train_model("cnn1d", DETECTOR, store, tmp_path / "m", tmp_path / "live",
                        DETECTOR_TRAIN.model_copy(update={"threads": 2}), 0)
    with pytest.raises(_Threads, match="1"):
        _run(dataset, tmp_path, method="cleanlab")
    with pytest.raises(_Threads, match="1"):
        evaluate.evaluate_model(tmp_path / "missing.pt", store, tmp_path / "e.json",
                                tmp_path / "plots", EvaluateConfig())


class _CropScore(torch.nn.Module):
    """Logit of class c = the mean of band c of a window: one event in one window."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=2)


def test_crops_aggregate_by_mean_or_max() -> None:
    """Scores of a clip's windows: averaged (an event in one of four windows is diluted)
    or their maximum (presence anywhere in the clip)."""
    from torch.utils.data import DataLoader, TensorDataset

    from audiotag.features.store import Item, collate_clips
    from audiotag.training.inference import predict

    x = torch.full((1, 4, 2, 3), -10.0)
    x[0, 1, 0] = 10.0  # class 0 sounds in window 1 only; class 1 never
    loader = DataLoader(TensorDataset(x, torch.tensor([[1.0, 0.0]]), torch.ones(1)),
                        collate_fn=lambda rows: collate_clips([Item(*r) for r in rows]))
    mean, _, _ = predict(_CropScore(), loader, torch.device("cpu"))
    top, _, _ = predict(_CropScore(), loader, torch.device("cpu"), crop_aggregate="max")
    assert mean[0, 0] == pytest.approx(0.25, abs=1e-3) and mean[0, 1] < 1e-3
    assert top[0, 0] == pytest.approx(1.0, abs=1e-3) and top[0, 1] < 1e-3
    with pytest.raises(ValueError, match="crop_aggregate"):
        predict(_CropScore(), loader, torch.device("cpu"), crop_aggregate="median")


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_clean_crop_aggregate_reaches_the_detector_scores(monkeypatch, dataset, tmp_path,
                                                          aggregate) -> None:
    from audiotag.training import oof

    seen: list[str] = []
    real = oof.predict

    def spy(*args, **kwargs):
        seen.append(kwargs.get("crop_aggregate", "mean"))
        return real(*args, **kwargs)

    monkeypatch.setattr(oof, "predict", spy)
    _run(dataset, tmp_path, method="cleanlab", n_folds=2, crop_aggregate=aggregate,
         train={"epochs": 1})
    assert seen == [aggregate, aggregate]
