"""Ensembles across models (issue 20 item 2): the averaging methods, mismatched members
refused naming the file, the params checks, and stage ensemble@<name> writing exactly what
dvc.yaml declares."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import rankdata

from audiotag.core.errors import ParamsError
from audiotag.core.params import read_params
from audiotag.evaluation.config import EvaluateConfig, parse_ensembles
from audiotag.evaluation.ensemble import (
    combine,
    ensemble_predictions,
    evaluate_ensemble,
    read_predictions,
)
from audiotag.metrics.lwlrap import per_class_lwlrap
from audiotag.params_check import check_params

CLASSES = ["a", "b", "c"]


def _scores(seed, n=8):
    return np.random.default_rng(seed).random((n, len(CLASSES)))


def _write(path, scores, labels=None, classes=CLASSES, ids=None):
    n = len(scores)
    labels = labels or [CLASSES[i % 3] + (";c" if i % 4 == 1 else "") for i in range(n)]
    table = pd.DataFrame({"clip_id": ids or [f"x{i}" for i in range(n)], "labels": labels,
                          **{c: scores[:, j] for j, c in enumerate(classes)}})
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def test_mean_and_geometric_mean():
    a, b = _scores(0), _scores(1)
    np.testing.assert_allclose(combine([a, b], "mean"), (a + b) / 2)
    np.testing.assert_allclose(combine([a, b], "geometric"), np.sqrt(a * b))
    # a confident "no" of one member: the geometric mean stays near 0, the mean does not
    no = combine([np.array([[0.0]]), np.array([[1.0]])], "geometric")
    assert no[0, 0] < 1e-3 and combine([np.array([[0.0]]), np.array([[1.0]])], "mean") == 0.5


def test_rank_average_matches_scipy_rankdata():
    a, b = _scores(0), _scores(1)
    a[:3, 0] = 0.5  # ties get their average rank
    expected = np.empty_like(a)
    for j in range(a.shape[1]):
        expected[:, j] = (rankdata(a[:, j]) + rankdata(b[:, j])) / (2 * len(a))
    np.testing.assert_allclose(combine([a, b], "rank"), expected)
    # rank averaging ignores each member's scale: a rescaled member changes nothing
    np.testing.assert_allclose(combine([a * 100, b ** 3], "rank"), expected)


def test_mismatched_members_are_refused_naming_the_file(tmp_path):
    one = _write(tmp_path / "m1.csv", _scores(0))
    other_classes = _write(tmp_path / "m2.csv", _scores(1), classes=["a", "c", "b"])
    with pytest.raises(ValueError, match=r"m2\.csv \(vs .*m1\.csv\): classes differ"):
        ensemble_predictions({"m1": one, "m2": other_classes}, "mean")
    other_clips = _write(tmp_path / "m3.csv", _scores(1), ids=[f"y{i}" for i in range(8)])
    with pytest.raises(ValueError, match=r"m3\.csv .*the clips differ"):
        ensemble_predictions({"m1": one, "m3": other_clips}, "mean")
    fewer = _write(tmp_path / "m4.csv", _scores(1, n=7))
    with pytest.raises(ValueError, match=r"m4\.csv .*the clips differ"):
        ensemble_predictions({"m1": one, "m4": fewer}, "mean")
    relabelled = _write(tmp_path / "m5.csv", _scores(1), labels=["a"] * 8)
    with pytest.raises(ValueError, match=r"m5\.csv .*different labels"):
        ensemble_predictions({"m1": one, "m5": relabelled}, "mean")
    unknown = _write(tmp_path / "m6.csv", _scores(1), labels=["zzz"] + ["a"] * 7)
    with pytest.raises(ValueError, match=r"m6\.csv: label 'zzz' is not a class column"):
        read_predictions(unknown)


def test_regression_columns_are_not_averaged(tmp_path):
    path = _write(tmp_path / "m.csv", _scores(0))
    table = pd.read_csv(path).assign(targets_valence=1.5)
    table.to_csv(path, index=False)
    pred = read_predictions(path)
    assert pred.classes == CLASSES and pred.scores.shape == (8, 3)


def test_evaluate_ensemble_scores_the_average(tmp_path):
    """The ensemble's lwlrap is that of the averaged scores, its files are a model's."""
    truth_scores = {m: _scores(s) for m, s in (("m1", 0), ("m2", 1))}
    test = {m: _write(tmp_path / f"p/{m}.csv", s) for m, s in truth_scores.items()}
    valid = {m: _write(tmp_path / f"p/valid/{m}.csv", _scores(s + 5, n=6))
             for m, s in (("m1", 0), ("m2", 1))}
    metrics = evaluate_ensemble("ens", "mean", EvaluateConfig(), test, valid, tmp_path / "e.json",
                                tmp_path / "d.json", tmp_path / "plots", tmp_path / "e.csv")
    pred = read_predictions(test["m1"])
    expected = per_class_lwlrap(pred.targets, (truth_scores["m1"] + truth_scores["m2"]) / 2)
    assert metrics["lwlrap"] == pytest.approx(expected.overall, abs=1e-6)
    assert metrics["members"] == ["m1", "m2"] and metrics["method"] == "mean"
    # the headline under the file's name (`dvc exp show` column e.lwlrap); CI in the details
    assert json.loads((tmp_path / "e.json").read_text()) == {"e": {"lwlrap": metrics["lwlrap"]}}
    assert metrics["lwlrap_ci_low"] <= metrics["lwlrap"] <= metrics["lwlrap_ci_high"]
    out = pd.read_csv(tmp_path / "e.csv", dtype={"clip_id": str, "labels": str},
                      keep_default_na=False)
    assert out.columns.tolist() == ["clip_id", "labels", *CLASSES]
    np.testing.assert_allclose(out[CLASSES].to_numpy(),
                               (truth_scores["m1"] + truth_scores["m2"]) / 2, rtol=1e-5)


def _raw(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text("train: {models: [cnn1d, crnn]}\n" + text)
    return read_params(path)


def test_ensemble_params_are_checked(tmp_path, repo_root):
    assert parse_ensembles(read_params(repo_root / "params.yaml"))  # the default: one
    assert parse_ensembles(_raw(tmp_path, "ensembles: {}")) == {}
    bad = {"ensembles: {e: {models: [cnn1d, cnn2d], method: mean}}":
           r"ensembles\.e\.models\[1\]: 'cnn2d' is not in train\.models",
           "ensembles: {e: {models: [cnn1d], method: mean}}": r"ensembles\.e\.models: ",
           "ensembles: {e: {models: [cnn1d, cnn1d], method: mean}}": "listed twice",
           "ensembles: {e: {models: [cnn1d, crnn], method: median}}": r"ensembles\.e\.method",
           "ensembles: {e: {models: [cnn1d, crnn], methd: mean}}": r"ensembles\.e\.methd",
           "ensembles: {crnn: {models: [cnn1d, crnn], method: mean}}": "a model's or",
           "ensembles: {labels: {models: [cnn1d, crnn], method: mean}}": "another stage's",
           "ensembles: {a/b: {models: [cnn1d, crnn], method: mean}}": "a file name"}
    for text, message in bad.items():
        with pytest.raises(ParamsError, match=message):
            parse_ensembles(_raw(tmp_path, text))
    # the default ensemble: every model of train.models, so another train.models stays valid
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    (default,) = parse_ensembles(params).values()
    assert default.members(params["train"]["models"]) == ["cnn1d", "crnn"]
    for models in (["cnn2d"], ["cnn1d", "cnn2d", "crnn"]):
        params["train"]["models"] = models
        (tmp_path / "all.yaml").write_text(yaml.safe_dump(params))
        check_params(tmp_path / "all.yaml")
        assert default.members(models) == models
    # stage check_params: members listed by name must be trained
    params["ensembles"]["ensemble"]["models"] = ["cnn1d", "crnn"]
    params["train"]["models"] = ["cnn1d", "cnn2d"]
    (tmp_path / "all.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=r"ensembles\.ensemble\.models\[1\]: 'crnn' is not"):
        check_params(tmp_path / "all.yaml")


def test_an_ensemble_of_one_model_is_skipped_with_empty_files(tmp_path):
    test = {"m1": _write(tmp_path / "p/m1.csv", _scores(0))}
    valid = {"m1": _write(tmp_path / "p/valid/m1.csv", _scores(1))}
    details = evaluate_ensemble("ens", "mean", EvaluateConfig(), test, valid,
                                tmp_path / "e.json", tmp_path / "d.json", tmp_path / "plots",
                                tmp_path / "e.csv")
    assert "fewer than two" in details["skipped"]
    assert json.loads((tmp_path / "e.json").read_text()) == {}  # no column, no report row
    assert pd.read_csv(tmp_path / "e.csv").empty
    assert pd.read_csv(tmp_path / "plots/per_class_lwlrap.csv").empty


def _declared(stage: dict, name: str) -> set[str]:
    files = set()
    for section in ("outs", "metrics", "plots"):
        for entry in stage.get(section) or []:
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            files.add(path.replace("${key}", name))
    return files


def test_stage_writes_exactly_what_dvc_yaml_declares(tmp_path, repo_root):
    stage = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["ensemble"]["do"]
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["ensembles"] = {"avg": {"models": ["cnn1d", "crnn"], "method": "rank"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for i, model in enumerate(["cnn1d", "crnn"]):
        _write(tmp_path / f"predictions/{model}.csv", _scores(i))
        _write(tmp_path / f"predictions/valid/{model}.csv", _scores(i + 2, n=6))
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    cmd = shlex.split(stage["cmd"].replace("${key}", "avg"))
    assert cmd[:2] == ["python", "stages/ensemble.py"]
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    subprocess.run([sys.executable, str(repo_root / cmd[1]), *cmd[2:]], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
               if p.is_file() and p not in before}
    assert written == _declared(stage, "avg")
    assert json.loads((tmp_path / "metrics/details/avg.json").read_text())["method"] == "rank"
