"""Label cleaning: detection finds known flips, actions, untouched subsets, params errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from audiotag.cleaning.detect import bce_per_clip, clip_lwlrap
from audiotag.cleaning.fastmodel import (
    FastCNN,
    _max_mix,
    fold_workers,
    model_input,
    out_of_fold_proba,
)
from audiotag.cleaning.run import (
    apply_action,
    clean_labels,
    detection_scores,
    suggest_labels,
    suspect_class,
)
from audiotag.core.config import CleanConfig, ParamsError, parse_group
from audiotag.data.manifest import labels_to_matrix, read_manifest, write_manifest
from audiotag.metrics.lwlrap import lwlrap

CLASSES = ["low", "mid", "high", "buzz"]
FREQS = {"low": 300.0, "mid": 900.0, "high": 2500.0, "buzz": 150.0}
SR = 8000
# a small, quick fast model: 8 kHz audio, 32 mel bands, 1.5 s
FAST = {"sample_rate": SR, "n_fft": 256, "hop_length": 128, "n_mels": 32, "max_seconds": 1.5,
        "channels": 16, "epochs": 10, "n_folds": 3, "lr": 0.01, "model": "linear",
        "filter_by": "prune_by_noise_rate"}


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
    """Tone clips: 48 curated, 64 noisy (16 flipped, known via true_labels), 12 test."""
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
    df = pd.DataFrame(rows)
    write_manifest(df, CLASSES, root)
    return root, read_manifest(root)[0]


def _run(dataset, tmp_path, **params):
    root, _ = dataset
    cfg = CleanConfig(**{**FAST, **params})
    out = tmp_path / "clean"
    metrics = clean_labels(read_manifest(root)[0], CLASSES, root, out, tmp_path / "labels.json",
                           tmp_path / "plots" / "flagged.csv", cfg, seed=0)
    cleaned, _ = read_manifest(out)
    return metrics, cleaned, pd.read_csv(out / "label_issues.csv", keep_default_na=False)


def _assert_untouched(raw: pd.DataFrame, cleaned: pd.DataFrame) -> None:
    """Curated and test rows leave exactly as they came in (paths aside, which are re-pointed)."""
    cols = [c for c in raw.columns if c != "path"]
    for subset in ("curated", "test"):
        before = raw.loc[raw["subset"] == subset, cols].reset_index(drop=True)
        after = cleaned.loc[cleaned["subset"] == subset, cols].reset_index(drop=True)
        pd.testing.assert_frame_equal(before, after)
        if "weight" in cleaned.columns:
            assert (cleaned.loc[cleaned["subset"] == subset, "weight"] == 1.0).all()


# ----------------------------------------------------------------- detection, end to end


@pytest.mark.parametrize("method", ["cleanlab", "agreement"])
def test_detection_finds_most_known_flips(dataset, tmp_path, method) -> None:
    metrics, cleaned, issues = _run(dataset, tmp_path, method=method, action="drop",
                                    threshold=0.9)
    assert metrics["detection_recall"] >= 0.8, metrics
    assert metrics["detection_precision"] >= 0.7, metrics
    assert metrics["noise_rate_after"] < metrics["measured_noise_rate"] == 0.25
    assert metrics["flagged"] == len(issues) == 64 - (cleaned["subset"] == "noisy").sum()
    assert set(issues["clip_id"]) <= {f"noisy_{i:03d}" for i in range(64)}
    _assert_untouched(dataset[1], cleaned)


@pytest.mark.parametrize("model, extra", [
    ("linear", {}), ("cnn1d", {}), ("cnn1d", {"stem_channels": 0, "mix_fraction": 0.5}),
    ("cnn2d", {})])
def test_default_detection_reaches_a_high_f1(dataset, tmp_path, model, extra) -> None:
    """The default detector (cleanlab, confident_learning) on clips with 16 known flips."""
    metrics, cleaned, _ = _run(dataset, tmp_path, method="cleanlab", action="weight",
                               filter_by="confident_learning", model=model, **extra)
    assert metrics["detection_f1"] >= 0.85, metrics
    assert metrics["noise_rate_after"] < metrics["measured_noise_rate"] / 2, metrics
    _assert_untouched(dataset[1], cleaned)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_gpu_names_clean_device(dataset, tmp_path) -> None:
    with pytest.raises(RuntimeError, match="clean.device is 'cuda'"):
        _run(dataset, tmp_path, method="cleanlab", device="cuda")
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
    written = json.loads((tmp_path / "labels.json").read_text())
    assert written == metrics and written["clips"] == {"curated": 48, "noisy": 64, "test": 12}


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
    raw = dataset[1]
    pd.testing.assert_frame_equal(raw.drop(columns="path"), cleaned.drop(columns="path"))
    assert metrics["noise_rate_after"] == metrics["measured_noise_rate"] == 0.25


@pytest.mark.parametrize("model", ["linear", "cnn1d"])
def test_fold_workers_do_not_change_the_probabilities(model) -> None:
    """Folds trained in 2 spawned processes give bit-identical out-of-fold probabilities."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 8, 12)).astype(np.float32)
    y = (rng.random((40, 3)) < 0.4).astype(np.float32)
    x[:, :3] += 2.0 * y[:, :, None]  # learnable: class c lifts band c
    base = {**FAST, "model": model, "epochs": 3, "device": "cpu", "n_folds": 4}
    x_in = model_input(x, CleanConfig(**base))
    serial = out_of_fold_proba(x_in, y, CleanConfig(**base, workers=1), seed=5)
    parallel = out_of_fold_proba(x_in, y, CleanConfig(**base, workers=2), seed=5)
    np.testing.assert_array_equal(serial, parallel)
    assert serial.shape == (40, 3) and (serial > 0).all() and (serial < 1).all()
    assert fold_workers(CleanConfig(**base, workers=2), 4) == 2
    assert fold_workers(CleanConfig(**base, workers=8), 4) == 4  # at most one per fold


@pytest.mark.parametrize("n_mels", [30, 32])
def test_cnn1d_stem_is_shared_across_bands(n_mels) -> None:
    """The stem finds a pattern at any pitch: shifting a pattern up by 8 mel bands shifts
    the stem's maps up by two pooled bands (4 bands each) and changes nothing else."""
    torch.manual_seed(0)
    model = FastCNN(n_mels, 5, channels=8, dropout=0.0, stem_channels=4).eval()
    assert model(torch.randn(3, n_mels, 40)).shape == (3, 5)  # 30 bands: ceil-pooled to 8
    x = torch.zeros(1, 1, n_mels, 40)
    x[0, 0, 8:10, 10:20] = torch.tensor([1.0, -1.0]).repeat(5)  # a wobble at bands 8-9
    with torch.no_grad():
        low = model.stem(x)
        high = model.stem(torch.roll(x, 8, dims=2))  # the same wobble 8 bands higher
    torch.testing.assert_close(high[:, :, 3:6], low[:, :, 1:4])
    assert not torch.equal(high, low)
    assert FastCNN(n_mels, 5, 8, 0.0, stem_channels=0).stem is None


def test_max_mix_unites_clips_and_labels() -> None:
    gen = torch.Generator().manual_seed(0)
    batch = torch.stack([torch.full((2, 6), float(i)) for i in range(4)])  # clip i is all i
    batch[:, :, 0] = 10.0 * torch.arange(4).view(4, 1)  # ... but frame 0 says 10 * i
    targets = torch.eye(4)
    mixed, union = _max_mix(batch, targets, 0.5, gen)
    assert mixed.shape == batch.shape and union.shape == targets.shape
    torch.testing.assert_close(mixed[2:], batch[2:])  # the rest of the batch is untouched
    torch.testing.assert_close(union[2:], targets[2:])
    for i in range(2):
        partner = [j for j in range(4) if union[i, j] == 1 and j != i]
        assert union[i, i] == 1 and len(partner) <= 1  # its own labels plus its partner's
        j = partner[0] if partner else i
        assert torch.equal(mixed[i].amax(), torch.tensor(10.0 * max(i, j)))
        assert (mixed[i] >= batch[i]).all()
    assert _max_mix(batch, targets, 0.0, gen)[0] is batch


def test_same_seed_same_outputs(dataset, tmp_path) -> None:
    first = _run(dataset, tmp_path / "a", method="cleanlab", action="keep", epochs=2)
    second = _run(dataset, tmp_path / "b", method="cleanlab", action="keep", epochs=2)
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
    ("drop", ["low", "mid", "low;mid", "high"], None, ["c0", "n0", "n2", "t0"]),
    ("relabel", ["low", "mid", "buzz", "low;mid", "high"], None, None),
    ("weight", ["low", "mid", "high", "low;mid", "high"], [1.0, 1.0, 0.25, 1.0, 1.0], None),
    ("keep", ["low", "mid", "high", "low;mid", "high"], None, None),
])
def test_each_action_gives_the_expected_manifest(action, labels, weights, kept) -> None:
    df, rows = _toy()
    cfg = CleanConfig(method="cleanlab", action=action, flagged_weight=0.25)
    flagged = np.array([False, True, False])
    out = apply_action(df, rows, flagged, ["mid", "buzz", "low"], cfg)
    assert list(out["labels"]) == labels
    assert list(out["clip_id"]) == (kept or list(df["clip_id"]))
    assert ("weight" in out.columns) == (weights is not None)
    if weights is not None:
        assert list(out["weight"]) == weights
    _assert_untouched(df, out)
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
    ({"threshold": 1.5}, "clean.threshold"),
    ({"method": "magic"}, "clean.method"),
    ({"action": "burn"}, "clean.action"),
    ({"n_folds": 1}, "clean.n_folds"),
    ({"relabel_threshold": 0.3}, "clean.relabel_threshold"),
    ({"max_per_class": 0}, "clean.max_per_class"),
    ({"flagged_weight": -1}, "clean.flagged_weight"),
    ({"treshold": 0.5}, "clean.treshold"),
    ({"workers": -1}, "clean.workers"),
    ({"stem_channels": -8}, "clean.stem_channels"),
    ({"mix_fraction": 1.5}, "clean.mix_fraction"),
])
def test_bad_params_name_the_key(group, key) -> None:
    with pytest.raises(ParamsError, match=re.escape(f"params.yaml: {key}: ")):
        parse_group({"clean": group}, "clean", CleanConfig)


def test_stage_stops_on_bad_params_before_writing(dataset, tmp_path, repo_root) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("seed: 1\nclean:\n  method: cleanlab\n  threshold: -0.5\n")
    result = subprocess.run(
        [sys.executable, str(repo_root / "stages/clean_labels.py"), "--raw", str(dataset[0]),
         "--out", str(tmp_path / "clean"), "--metrics", str(tmp_path / "m.json"),
         "--plot", str(tmp_path / "p.csv"), "--params", str(params)],
        capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "clean.threshold" in result.stderr
    assert not (tmp_path / "clean").exists() and not (tmp_path / "m.json").exists()


def test_labels_matrix_of_a_cleaned_manifest_round_trips(dataset, tmp_path) -> None:
    _, cleaned, _ = _run(dataset, tmp_path, method="agreement", action="relabel", threshold=0.9)
    noisy = cleaned[cleaned["subset"] == "noisy"]
    before = (labels_to_matrix(dataset[1].query("subset == 'noisy'")["labels"], CLASSES)
              != labels_to_matrix(dataset[1].query("subset == 'noisy'")["true_labels"], CLASSES))
    after = (labels_to_matrix(noisy["labels"], CLASSES)
             != labels_to_matrix(noisy["true_labels"], CLASSES))
    assert after.any(axis=1).sum() < before.any(axis=1).sum() / 2  # relabelling fixes most
    _assert_untouched(dataset[1], cleaned)
