"""k-fold cross-validation (issue 20, training tools item 1): iterative stratification of
the folds, the ``cv`` params, a fold model through the one trainer, out-of-fold assembly,
the fold ensemble's evaluation and its row in the report and column in compare."""

import json

import numpy as np
import pandas as pd
import pytest
from helpers import tone_store

from audiotag.core.errors import ParamsError
from audiotag.core.io import read_json, write_json
from audiotag.data.config import SplitConfig
from audiotag.data.split import assign_folds, iterative_stratification
from audiotag.evaluation.config import EvaluateConfig, parse_ensembles
from audiotag.evaluation.cv import assemble_oof, evaluate_cv
from audiotag.features.config import FeaturesConfig
from audiotag.training import cv as cv_module
from audiotag.training.config import TrainConfig, parse_cv
from audiotag.training.cv import POOL_ROLES, cv_pool, run_fold

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _multilabel(n=300, c=12, seed=0):
    """Targets with long-tailed class frequencies (some classes rare), 1-3 labels a row."""
    rng = np.random.default_rng(seed)
    p = np.geomspace(0.4, 0.02, c)
    y = rng.random((n, c)) < p
    y[~y.any(axis=1), 0] = True
    return y.astype(np.float32)


def _spread(y, folds, k):
    """Per class, the largest minus the smallest count of its rows in a fold."""
    counts = np.stack([y[folds == f].sum(axis=0) for f in range(k)])  # (k, C)
    return counts.max(axis=0) - counts.min(axis=0)


# --- stratification ---------------------------------------------------------------------


def test_every_label_is_spread_over_the_folds_better_than_a_random_split():
    y, k = _multilabel(), 5
    folds = iterative_stratification(y, k, seed=1)
    assert folds.shape == (len(y),) and set(folds) == set(range(k))  # each row: one fold
    for c in np.flatnonzero(y.sum(axis=0) >= k):  # a class with >= k rows is in every fold
        assert all(y[folds == f, c].sum() > 0 for f in range(k)), c
    sizes = np.bincount(folds, minlength=k)
    # sizes come second to the classes (the commonest class is dealt last): within 25 %
    assert sizes.max() - sizes.min() <= 0.25 * len(y) / k
    random = np.random.default_rng(1).permutation(np.arange(len(y)) % k)
    assert _spread(y, folds, k).sum() < 0.5 * _spread(y, random, k).sum()
    assert _spread(y, folds, k).max() <= 2  # (1 here; a random split: up to 9)


def test_single_label_rows_give_stratified_k_fold():
    rng = np.random.default_rng(0)
    labels = rng.choice(6, size=97, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05])
    y = np.eye(6, dtype=np.float32)[labels]
    folds = iterative_stratification(y, 4, seed=3)
    assert _spread(y, folds, 4).max() <= 1  # every class dealt to the folds in turn


def test_stratification_is_deterministic_by_seed_and_places_unlabelled_rows():
    y = _multilabel(n=120)
    y[:10] = 0  # unlabelled rows (data.allow_unlabelled)
    a, b = iterative_stratification(y, 4, 7), iterative_stratification(y, 4, 7)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, iterative_stratification(y, 4, 8))
    assert (a >= 0).all() and (a < 4).all()


# --- params -------------------------------------------------------------------------------


def test_cv_params_are_checked_and_name_the_key():
    assert parse_cv({}).models == []  # missing group: no cross-validation
    with pytest.raises(ParamsError, match=r"cv\.k: .*greater than or equal to 2"):
        parse_cv({"cv": {"k": 1, "folds": [0]}})
    with pytest.raises(ParamsError, match=r"folds\[1\]: fold 3 is not one of the k=3 folds"):
        parse_cv({"cv": {"k": 3, "folds": [0, 3]}})
    with pytest.raises(ParamsError, match=r"folds: a fold is listed twice"):
        parse_cv({"cv": {"folds": [1, 1]}})
    with pytest.raises(ParamsError, match=r"cv\.models\[0\]: unknown model 'cnn9d'"):
        parse_cv({"cv": {"models": ["cnn9d"]}})
    with pytest.raises(ParamsError, match=r"folds: empty while cv\.models"):
        parse_cv({"cv": {"models": ["cnn1d"], "folds": []}})
    with pytest.raises(ParamsError, match=r"ensembles\.cnn1d_cv: .*fold ensemble"):
        parse_ensembles({"train": {"models": ["cnn1d", "crnn"]},
                         "ensembles": {"cnn1d_cv": {"models": None, "method": "mean"}}})


def test_k_above_the_rarest_class_names_cv_k():
    pool = pd.DataFrame({"clip_id": [f"c{i}" for i in range(8)], "subset": "curated",
                         "labels": ["a"] * 6 + ["b;a", "b"]})
    assign_folds(pool, ["a", "b"], 2, seed=0, key="cv.k")
    with pytest.raises(ParamsError, match=r"cv\.k=3: class 'b' has only 2 training clip"):
        assign_folds(pool, ["a", "b"], 3, seed=0, key="cv.k")
    with pytest.raises(ParamsError, match=r"cv\.k=9: only 8 training clips"):
        assign_folds(pool, ["a", "b"], 9, seed=0, key="cv.k")


# --- a fold model through the one trainer ------------------------------------------------

FEATURES = FeaturesConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, fmin=50,
                          fmax=4000, clip_seconds=1.0)
TRAIN = TrainConfig(models=["cnn1d"], epochs=1, batch_size=8, lr=0.01, device="cpu",
                    train_score_clips=0)


def test_a_fold_model_trains_on_the_other_folds_and_scores_its_own(tmp_path, monkeypatch):
    store = tone_store(tmp_path, FEATURES)
    labels = tmp_path / "labels.csv"  # label cleaning's file: one noisy clip dropped
    index = pd.read_csv(store / "index.csv", dtype={"clip_id": str}, keep_default_na=False)
    train = index[index["role"] == "train"]
    dropped = train[train["subset"] == "noisy"]["clip_id"].iloc[0]
    train[train["clip_id"] != dropped].assign(weight=0.5)[["clip_id", "labels", "weight"]] \
        .to_csv(labels, index=False)
    pool = cv_pool(store, labels)
    assert dropped not in set(pool["clip_id"]) and set(pool["role"]) == set(POOL_ROLES)
    assert (pool.loc[pool["role"] == "valid", "weight"] == 1).all()
    assert (pool.loc[pool["role"] == "train", "weight"] == 0.5).all()

    seen = {}
    real = cv_module.train_model

    def spy(*args, clips, **kwargs):
        seen["clips"] = clips
        return real(*args, clips=clips, **kwargs)

    monkeypatch.setattr(cv_module, "train_model", spy)
    split = SplitConfig()
    out = tmp_path / "fold1"
    summary = run_fold("cnn1d", {"channels": [8, 8]}, store, out, TRAIN, split, 3, 1, 42,
                       labels=labels)
    folds = assign_folds(pool, ["low", "mid", "high"], 3, 42, key="cv.k")
    held = set(pool["clip_id"][folds == 1])
    clips = seen["clips"]
    assert not held & set(clips.train["clip_id"])  # the fold's clips never train
    assert set(clips.train["clip_id"]) == set(pool["clip_id"]) - held
    assert set(clips.valid["clip_id"]) <= held
    assert set(pool.set_index("clip_id").loc[list(clips.valid["clip_id"]), "subset"]) == \
        {"curated"}  # split.valid_subsets: noisy labels do not choose the epoch
    oof = pd.read_csv(out / "oof.csv", dtype={"clip_id": str}, keep_default_na=False)
    assert set(oof["clip_id"]) == held and list(oof.columns[2:]) == ["low", "mid", "high"]
    assert len(pd.read_csv(out / "test.csv")) == 9
    assert (out / "model" / "model.pt").exists() and (out / "live").is_dir()
    assert summary == {**read_json(out / "fold.json")} and summary["seed"] == 43
    assert summary["train_clips"] + summary["held_out_clips"] == len(pool)
    assert 0 < summary["valid_lwlrap"] <= 1


# --- out-of-fold assembly and the fold ensemble ------------------------------------------

CLASSES = ["a", "b", "c"]


def _table(ids, labels, scores):
    table = pd.DataFrame(np.asarray(scores, dtype=float), columns=CLASSES)
    table.insert(0, "labels", labels)
    table.insert(0, "clip_id", ids)
    return table


def test_oof_assembly_keeps_every_fold_and_refuses_a_clip_in_two():
    f0 = _table(["x", "y"], ["a", "b"], [[0.9, 0.1, 0.1], [0.2, 0.7, 0.1]])
    f1 = _table(["z"], ["c"], [[0.1, 0.2, 0.8]])
    oof = assemble_oof({1: f1, 0: f0})
    assert oof["clip_id"].tolist() == ["x", "y", "z"]
    assert oof.loc[2, "c"] == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"clip 'y' is held out by folds 0 and 1"):
        assemble_oof({0: f0, 1: _table(["y"], ["b"], [[0.1, 0.2, 0.3]])})


def _fold_dir(root, fold, oof, test, valid_lwlrap, valid_clips):
    d = root / str(fold)
    d.mkdir(parents=True)
    oof.to_csv(d / "oof.csv", index=False)
    test.to_csv(d / "test.csv", index=False)
    write_json(d / "fold.json", {"model": "cnn1d", "fold": fold, "k": 3, "seed": 42 + fold,
                                 "train_clips": 4, "held_out_clips": len(oof),
                                 "valid_lwlrap": valid_lwlrap, "best_epoch": 1,
                                 "valid_clips": valid_clips})


def test_fold_ensemble_is_the_mean_of_the_fold_models_and_is_evaluated(tmp_path):
    test_ids, test_labels = ["t1", "t2", "t3", "t4"], ["a", "b", "c", "a;b"]
    s0 = [[0.9, 0.1, 0.2], [0.3, 0.6, 0.1], [0.1, 0.5, 0.4], [0.6, 0.7, 0.1]]
    s2 = [[0.7, 0.3, 0.2], [0.1, 0.8, 0.3], [0.2, 0.1, 0.9], [0.8, 0.4, 0.3]]
    folds = tmp_path / "folds"
    _fold_dir(folds, 0, _table(["x", "y"], ["a", "b"], [[0.9, 0.1, 0.1], [0.2, 0.7, 0.1]]),
              _table(test_ids, test_labels, s0), 1.0, ["x", "y"])
    _fold_dir(folds, 2, _table(["z", "w"], ["c", "a"], [[0.1, 0.2, 0.8], [0.3, 0.4, 0.5]]),
              _table(test_ids, test_labels, s2), 0.5, ["z"])  # w: a noisy clip
    _fold_dir(folds, 1, _table(["q"], ["b"], [[0.1, 0.9, 0.1]]),  # not in cv.folds: unread
              _table(test_ids, test_labels, s0), 0.0, ["q"])
    paths = {k: tmp_path / v for k, v in (("oof", "oof.csv"), ("m", "m.json"),
                                          ("d", "d.json"), ("p", "plots"), ("e", "e.csv"))}
    details = evaluate_cv("cnn1d_cv", "cnn1d", 3, [0, 2], folds,
                          EvaluateConfig(bootstrap_resamples=100), paths["oof"], paths["m"],
                          paths["d"], paths["p"], paths["e"])
    oof = pd.read_csv(paths["oof"], dtype={"clip_id": str})
    assert oof["clip_id"].tolist() == ["x", "y", "z", "w"]
    ens = pd.read_csv(paths["e"], dtype={"clip_id": str})
    assert np.allclose(ens[CLASSES].to_numpy(), (np.array(s0) + np.array(s2)) / 2)
    assert details["cv_folds"] == 2 and details["cv_lwlrap_mean"] == pytest.approx(0.75)
    assert details["cv_lwlrap_sd"] == pytest.approx(np.std([1.0, 0.5], ddof=1), abs=1e-6)
    assert details["oof_clips"] == 4 and details["oof_valid_clips"] == 3  # x, y, z
    assert details["oof_lwlrap"] == pytest.approx(1.0)  # x, y, z are ranked right
    head = json.loads(paths["m"].read_text())["m"]  # under the file's name
    assert list(head) == ["cv_lwlrap_mean", "cv_lwlrap_sd", "lwlrap"]
    assert head["lwlrap"] == details["lwlrap"] and "lwlrap_ci_low" in details
    assert (paths["p"] / "per_class_lwlrap.csv").exists()
    # a fold directory of another k is refused (a stale fold)
    write_json(folds / "2" / "fold.json", {**read_json(folds / "2" / "fold.json"), "k": 5})
    with pytest.raises(ValueError, match=r"fold 2 of k=5 .* not fold 2 of k=3"):
        evaluate_cv("cnn1d_cv", "cnn1d", 3, [0, 2], folds, EvaluateConfig(), paths["oof"],
                    paths["m"], paths["d"], paths["p"], paths["e"])


def test_the_report_and_compare_show_the_fold_ensemble():
    from audiotag.analysis.report import _ensembles_markdown
    from audiotag.compare import Run, predictions_path

    record = {"eval": {"cv_folds": 5, "cv_lwlrap_mean": 0.81, "cv_lwlrap_sd": 0.02,
                       "oof_lwlrap": 0.8, "method": "mean",
                       "folds": [{"model": "cnn1d", "k": 5}]}}
    text = "\n".join(_ensembles_markdown({"cnn1d_cv": record}, ["cnn1d_cv"]))
    assert "`cnn1d_cv`: mean of the 5 fold models of `cnn1d` (k=5)" in text
    assert "CV lwlrap 0.8100 ± 0.0200" in text
    run = Run("exp", None, {"cv.models": '["cnn1d"]'}, {})
    assert predictions_path(run, "cnn1d_cv") == "ensembles/cnn1d_cv.csv"
    assert predictions_path(run, "cnn1d") == "predictions/cnn1d.csv"
    assert predictions_path(Run("exp", None, {"cv.models": "[]"}, {}), "crnn_cv") == \
        "predictions/crnn_cv.csv"
