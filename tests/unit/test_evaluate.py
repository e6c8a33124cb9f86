"""Evaluation metrics against scikit-learn / SciPy on random data, and evaluate_model's wiring."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn import metrics as skm

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.contracts.predictions import ClipPredictions, predictions_table
from audiotag.evaluation import evaluate as ev
from audiotag.evaluation.config import EvaluateConfig
from audiotag.evaluation.scoring import regression_outputs
from audiotag.metrics.classification import (
    THRESHOLD_GRID,
    accuracy,
    average_precision,
    confusion_matrix,
    micro_f1_curve,
    multilabel_prf,
    singlelabel_prf,
    tune_threshold,
)
from audiotag.metrics.regression import mse, pearson, regression_metrics, spearman


def _multilabel(seed, n=150, c=7):
    rng = np.random.default_rng(seed)
    truth = (rng.random((n, c)) < 0.25).astype(int)
    truth[:, -1] = 0  # a class without positives
    scores = np.round(rng.random((n, c)) * 0.6 + truth * 0.3, 2)  # rounded: ties happen
    return truth, scores


@pytest.mark.parametrize("seed", range(4))
def test_average_precision_matches_sklearn(seed):
    truth, scores = _multilabel(seed)
    ours = average_precision(truth, scores)
    expected = [skm.average_precision_score(truth[:, c], scores[:, c])
                for c in range(truth.shape[1] - 1)]
    assert ours[:-1] == pytest.approx(expected, abs=1e-12)
    assert np.isnan(ours[-1])


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.71])
def test_multilabel_prf_matches_sklearn(threshold):
    truth, scores = _multilabel(11)
    pred = (scores >= threshold).astype(int)
    prf = multilabel_prf(truth, scores, threshold)
    p, r, f, s = skm.precision_recall_fscore_support(truth, pred, zero_division=0)
    assert prf.precision == pytest.approx(p) and prf.recall == pytest.approx(r)
    assert prf.f1 == pytest.approx(f) and prf.support.tolist() == s.tolist()
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(truth, pred, average=average,
                                                         zero_division=0)
        assert prf.averages[average] == pytest.approx({"precision": p, "recall": r, "f1": f})


def test_threshold_is_the_best_of_the_grid():
    truth, scores = _multilabel(5)
    threshold, f1 = tune_threshold(truth, scores)
    best = max(skm.f1_score(truth, (scores >= t).astype(int), average="micro", zero_division=0)
               for t in THRESHOLD_GRID)
    assert f1 == pytest.approx(best)
    assert skm.f1_score(truth, (scores >= threshold).astype(int), average="micro") == \
        pytest.approx(best)


@pytest.mark.parametrize("seed", range(4))
def test_f1_curve_is_sklearns_exactly(seed):
    """Bit-equal to scikit-learn at every threshold (ties between thresholds resolve the
    same way), including scores on the grid and a threshold nothing reaches."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((40, 5)) < 0.3).astype(int)
    scores = np.round(rng.random((40, 5)), 2)  # many scores equal to grid values
    grid = np.append(THRESHOLD_GRID, 1.5)
    curve = micro_f1_curve(truth, scores, grid)
    expected = [skm.f1_score(truth, (scores >= t).astype(int), average="micro", zero_division=0)
                for t in grid]
    assert curve.tolist() == expected


@pytest.mark.parametrize("seed", range(3))
def test_singlelabel_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    actual = rng.integers(0, 6, 200)
    predicted = np.where(rng.random(200) < 0.6, actual, rng.integers(0, 6, 200))
    predicted[predicted == 5] = 4  # class 5 is never predicted: precision 0 by convention
    labels = list(range(6))
    assert accuracy(actual, predicted) == pytest.approx(skm.accuracy_score(actual, predicted))
    assert (confusion_matrix(actual, predicted, 6)
            == skm.confusion_matrix(actual, predicted, labels=labels)).all()
    prf = singlelabel_prf(actual, predicted, 6)
    report = skm.classification_report(actual, predicted, labels=labels, output_dict=True,
                                       zero_division=0)
    for c in labels:
        assert (prf.precision[c], prf.recall[c], prf.f1[c]) == pytest.approx(
            (report[str(c)]["precision"], report[str(c)]["recall"], report[str(c)]["f1-score"]))
        assert prf.support[c] == report[str(c)]["support"]
    for average in ("macro", "weighted"):
        expected = report[f"{average} avg"]
        assert prf.averages[average] == pytest.approx(
            {"precision": expected["precision"], "recall": expected["recall"],
             "f1": expected["f1-score"]})
    assert prf.averages["micro"]["f1"] == pytest.approx(report["accuracy"])


@pytest.mark.parametrize("seed", range(3))
def test_regression_metrics_match_scipy(seed):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=80)
    pred = np.round(true + rng.normal(scale=0.8, size=80), 1)  # ties in the ranks
    assert pearson(true, pred) == pytest.approx(pearsonr(true, pred)[0])
    assert spearman(true, pred) == pytest.approx(spearmanr(true, pred)[0])
    assert mse(true, pred) == pytest.approx(skm.mean_squared_error(true, pred))
    true[:5] = np.nan  # clips without the target are left out
    keep = slice(5, None)
    assert spearman(true, pred) == pytest.approx(spearmanr(true[keep], pred[keep])[0])
    assert np.isnan(pearson(np.ones(5), np.arange(5.0)))  # constant side: undefined
    both = regression_metrics(np.c_[true, true], np.c_[pred, pred], ["a", "b"])
    assert both["a"]["n"] == 75 and both["a"] == both["b"]


# ---- evaluate_model, with the checkpoint and the predictions faked -------------------------

CLASSES = ["a", "b", "c"]


def _pred(labels, subsets, scores, extra=None):
    index = pd.DataFrame({"clip_id": [f"x{i}" for i in range(len(labels))],
                          "subset": subsets, "labels": labels, **(extra or {})})
    targets = np.array([[float(c in lab.split(";")) for c in CLASSES] for lab in labels])
    return ClipPredictions(CLASSES, index, np.asarray(scores, dtype=float), targets, 0.05)


def _fake(monkeypatch, tmp_path, preds, meta_extra=None, predictions=None):
    meta = CheckpointMeta.from_dict({
        "model_name": "m", "model_params": {}, "num_classes": len(CLASSES), "n_mels": 1,
        "classes": CLASSES, "epoch": 2, "valid_lwlrap": 0.75, "n_parameters": 123,
        **(meta_extra or {})})
    monkeypatch.setattr(ev, "load_checkpoint", lambda path, device: (None, meta))
    monkeypatch.setattr(ev, "predict_clips",
                        lambda model, store, roles, bs, dev, spec=None: preds[roles[0]])
    history = {"epochs": [{"epoch": 1, "train_loss": 0.9, "valid_loss": 0.8},
                          {"epoch": 2, "train_loss": 0.3, "valid_loss": 0.5}]}
    (tmp_path / "model").mkdir()
    (tmp_path / "model/history.json").write_text(json.dumps(history))
    return ev.evaluate_model(tmp_path / "model/model.pt", tmp_path / "features",
                             tmp_path / "m.json", tmp_path / "plots", EvaluateConfig(),
                             predictions, tmp_path / "details.json",
                             timings_path=tmp_path / "timings/m.json")


def test_evaluate_model_multilabel(monkeypatch, tmp_path):
    rng = np.random.default_rng(0)
    test = _pred(["a", "b;c", "c", "a;b"], ["test"] * 4, rng.random((4, 3)))
    valid = _pred(["a", "b", "c"], ["curated"] * 3, np.eye(3) * 0.8 + 0.1)
    train = _pred(["a", "b", "c", "a", "b", "c"], ["curated"] * 3 + ["noisy"] * 3,
                  np.r_[np.eye(3), np.eye(3)[[1, 2, 0]]] * 0.8 + 0.1)  # noisy labels "wrong"
    metrics = _fake(monkeypatch, tmp_path, {"test": test, "valid": valid, "train": train})
    assert metrics["task"] == "multilabel" and 0 < metrics["lwlrap"] <= 1
    assert metrics["threshold"] in THRESHOLD_GRID and metrics["threshold_valid_f1"] == 1.0
    assert metrics["overfit"]["loss_gap"] == pytest.approx(0.2)
    assert metrics["overfit"]["train_lwlrap"] < metrics["overfit"]["valid_lwlrap"] == 1.0
    # a noisy clip ranks its label last of three (tied with the other wrong one): 1/3
    assert metrics["lwlrap_by_subset"]["train"] == {"curated": 1.0,
                                                    "noisy": pytest.approx(1 / 3, abs=1e-6)}
    assert {s["class"] for s in metrics["noisy_label_suspects"]} == set(CLASSES)
    # wall-clock time: in the timings file, not among the results
    assert json.loads((tmp_path / "timings/m.json").read_text())["inference_ms_per_clip"] == \
        pytest.approx(12.5)
    assert not any("seconds" in key or "_ms_" in key for key in metrics)
    assert metrics["platform"]["evaluate"]["device"] == "cpu"
    assert "singlelabel" not in metrics and "accuracy" not in metrics  # multi-label clips
    assert metrics["n_parameters"] == 123 and metrics["best_epoch"] == 2
    assert isinstance(metrics["per_class"], list)  # a list: hidden from `dvc exp show`
    plots = tmp_path / "plots"
    assert pd.read_csv(plots / "per_class_lwlrap.csv").columns[:2].tolist() == ["class", "lwlrap"]
    assert pd.read_csv(plots / "lwlrap_by_subset.csv")["noisy"].notna().all()
    assert len(pd.read_csv(plots / "confusion.csv")) == 2  # the single-label test clips
    assert not (plots / "regression.csv").exists()  # regression@'s, for regression models
    # metrics/<model>.json: the headline only (`dvc metrics show`); details: every metric
    # under the file's name, so that `dvc exp show` names the columns m.lwlrap, ...
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved == {"m": {"lwlrap": metrics["lwlrap"], "valid_lwlrap": 0.75}}
    assert metrics["lwlrap_ci_low"] <= metrics["lwlrap"] <= metrics["lwlrap_ci_high"]
    assert json.loads((tmp_path / "details.json").read_text()) == metrics


def test_evaluate_writes_per_clip_test_predictions(monkeypatch, tmp_path):
    scores = np.c_[np.random.default_rng(1).random((4, 3)), [0.5, -1.0, 2.0, 0.3]]
    test = _pred(["a", "b;c", "", "a;b"], ["test"] * 4, scores, {"targets_valence": [0.0] * 4})
    out = tmp_path / "predictions" / "m.csv"
    _fake(monkeypatch, tmp_path, {"test": test, "valid": None, "train": None},
          {"task": "multitask", "targets": ["targets_valence"]}, out)
    table = pd.read_csv(out, dtype={"clip_id": str, "labels": str}, keep_default_na=False)
    assert table.columns.tolist() == ["clip_id", "labels", *CLASSES, "targets_valence"]
    assert table["clip_id"].tolist() == test.clip_ids
    assert table["labels"].tolist() == ["a", "b;c", "", "a;b"]
    np.testing.assert_allclose(table.iloc[:, 2:].to_numpy(), scores, rtol=1e-5)
    with pytest.raises(ValueError, match="named 'labels'"):
        predictions_table(test, ["labels", "b", "c", "v"])


def test_evaluate_writes_per_clip_validation_predictions(monkeypatch, tmp_path):
    """The ensembles tune their F1 threshold on these; without validation clips: a header."""
    rng = np.random.default_rng(2)
    test = _pred(["a", "b;c", "c", "a;b"], ["test"] * 4, rng.random((4, 3)))
    valid = _pred(["a", "b", "c"], ["curated"] * 3, rng.random((3, 3)))
    meta = CheckpointMeta("m", {}, len(CLASSES), 1, classes=CLASSES, n_parameters=1,
                          record={"epoch": 2})
    monkeypatch.setattr(ev, "load_checkpoint", lambda path, device: (None, meta))
    for preds in ({"test": test, "valid": valid}, {"test": test, "valid": None}):
        monkeypatch.setattr(ev, "predict_clips", lambda model, store, roles, bs, dev, spec=None,
                            p=preds: p[roles[0]] if roles[0] != "train" else None)
        out = tmp_path / "predictions/valid/m.csv"
        ev.evaluate_model(tmp_path / "model.pt", tmp_path / "f", tmp_path / "m.json",
                          tmp_path / "plots", EvaluateConfig(), None, None, out)
        table = pd.read_csv(out, dtype={"clip_id": str, "labels": str}, keep_default_na=False)
        assert table.columns.tolist() == ["clip_id", "labels", *CLASSES]
        if preds["valid"] is None:
            assert table.empty
        else:
            assert table["labels"].tolist() == ["a", "b", "c"]
            np.testing.assert_allclose(table[CLASSES].to_numpy(), valid.scores, rtol=1e-5)


def test_evaluate_model_singlelabel_data(monkeypatch, tmp_path):
    test = _pred(["a", "b", "c", "a"], ["test"] * 4,
                 [[0.9, 0.1, 0], [0.2, 0.7, 0.1], [0.6, 0.1, 0.3], [0.8, 0.1, 0.1]])
    valid = _pred(["a", "b", "c"], ["curated"] * 3, np.eye(3))
    metrics = _fake(monkeypatch, tmp_path, {"test": test, "valid": valid, "train": valid})
    assert "lwlrap_by_subset" not in metrics  # no split mixes curated and noisy
    single = metrics["singlelabel"]
    assert single["accuracy"] == 0.75 and single["n_clips"] == 4
    assert single["f1_micro"] == 0.75
    assert metrics["accuracy"] == 0.75  # top level too, beside lwlrap
    saved = json.loads((tmp_path / "m.json").read_text())["m"]
    assert saved["accuracy"] == 0.75 and "f1_micro" not in saved  # the task's decision metric
    confusion = pd.read_csv(tmp_path / "plots/confusion.csv")
    assert confusion.values.tolist() == [["a", "a"], ["b", "b"], ["c", "a"], ["a", "a"]]
    report = pd.read_csv(tmp_path / "plots/per_class_report.csv").set_index("class")
    assert report.loc["c", "recall"] == 0 and report.loc["a", "precision"] == pytest.approx(2 / 3)


def test_evaluate_model_regression_outputs(monkeypatch, tmp_path):
    raw = np.array([[0.5, -1.0], [2.0, 0.3], [-0.5, 1.2], [1.0, 0.0]])  # (clips, targets)
    scores = np.c_[np.full((4, 3), 0.5), raw]  # 3 class scores + 2 raw regression outputs
    truth = {"targets_valence": [0.4, 2.1, -0.4, 1.1], "targets_arousal": [-1, 0.2, 1.5, 0.1]}
    test = _pred(["a", "b", "c", "a"], ["test"] * 4, scores, truth)
    metrics = _fake(monkeypatch, tmp_path, {"test": test, "valid": None, "train": None},
                    {"task": "multitask", "targets": ["targets_valence", "arousal"]})
    reg = metrics["regression"]
    assert reg["valence"]["spearman"] == pytest.approx(1.0)
    assert reg["valence"]["pearson"] == pytest.approx(pearsonr(truth["targets_valence"],
                                                               raw[:, 0])[0], abs=1e-5)
    assert reg["arousal"]["mse"] == pytest.approx(
        skm.mean_squared_error(truth["targets_arousal"], raw[:, 1]), abs=1e-5)
    # the scatter is the regression@ stage's (tests/unit/test_analysis.py)
    assert not (tmp_path / "plots/regression.png").exists()


def test_regression_output_count_is_checked():
    test = _pred(["a"], ["test"], [[0.1, 0.2, 0.3, 0.4]], {"targets_x": [1.0]})
    with pytest.raises(ValueError, match="expected 3 class logits"):
        regression_outputs(test, 3, ["x", "y"])


def _declared_evaluate_files(repo_root) -> set[str]:
    """The files dvc.yaml declares for evaluate@m under its --plots dir (relative to it)."""
    import yaml

    stage = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["evaluate"]["do"]
    declared = set()
    for section in ("outs", "metrics", "plots"):
        for entry in stage.get(section) or []:
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            if path.startswith("plots/${item}/"):
                declared.add(path.removeprefix("plots/${item}/"))
    return declared


@pytest.mark.parametrize("task", ["multilabel", "multitask"])
def test_evaluate_writes_exactly_the_plots_dvc_yaml_declares(monkeypatch, tmp_path, repo_root,
                                                             task):
    # an undeclared file is neither cached nor pushed; a declared one not written fails repro
    rng = np.random.default_rng(0)
    if task == "multitask":
        preds = {"test": _pred(["a", "b", "c", "a"], ["test"] * 4,
                               np.c_[np.full((4, 3), 0.5), rng.random((4, 1))],
                               {"targets_valence": [0.4, 2.1, -0.4, 1.1]}),
                 "valid": None, "train": None}
        meta = {"task": "multitask", "targets": ["targets_valence"]}
    else:
        preds = {"test": _pred(["a", "b;c", "c", "a;b"], ["test"] * 4, rng.random((4, 3))),
                 "valid": None, "train": None}
        meta = None
    _fake(monkeypatch, tmp_path, preds, meta)
    written = {p.relative_to(tmp_path / "plots").as_posix()
               for p in (tmp_path / "plots").rglob("*") if p.is_file()}
    assert written == _declared_evaluate_files(repo_root)


def test_an_unlabelled_test_set_gives_no_test_metrics_not_a_traceback(monkeypatch, tmp_path):
    # issue 33 item 7: kept by data.allow_unlabelled, it failed inside sklearn
    test = _pred(["", "", "", ""], ["test"] * 4, np.random.default_rng(0).random((4, 3)))
    valid = _pred(["a", "b", "c"], ["curated"] * 3, np.eye(3) * 0.8 + 0.1)
    metrics = _fake(monkeypatch, tmp_path, {"test": test, "valid": valid, "train": None})
    assert "lwlrap" not in metrics and metrics["valid_lwlrap"] == 0.75
    assert json.loads((tmp_path / "m.json").read_text()) == {"m": {"valid_lwlrap": 0.75}}


def test_a_ci_from_too_few_test_clips_is_flagged_in_the_details_not_the_headline(
        monkeypatch, tmp_path, caplog):
    from audiotag.metrics.lwlrap import MIN_CI_CLIPS
    # issue 33 item 13: 4 clips gave a 95 % CI of [1.000, 1.000] with no word of the size
    test = _pred(["a;b", "b", "c", "a"], ["test"] * 4, [[1, 1, 0], [0, 1, 0], [0, 0, 1],
                                                       [1, 0, 0]])
    with caplog.at_level("WARNING"):
        metrics = _fake(monkeypatch, tmp_path, {"test": test, "valid": None, "train": None})
    assert (metrics["lwlrap_ci_low"], metrics["lwlrap_ci_high"]) == (1.0, 1.0)
    assert metrics["ci_note"] == (f"only 4 labelled test clips (fewer than {MIN_CI_CLIPS}): "
                                  "the 95 % CI says little")
    assert "only 4 labelled test clips" in caplog.text
    assert json.loads((tmp_path / "m.json").read_text()) == {"m": {"lwlrap": 1.0,
                                                                   "valid_lwlrap": 0.75}}
