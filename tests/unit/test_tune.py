"""The Optuna driver's parts that need no DVC run: search space, metric lookup, -S args."""

import optuna
import pytest

from audiotag.core.errors import ParamsError
from audiotag.tune import Dimension, Metric, find_experiment, load_space, set_args

PARAMS = {"train": {"lr": 0.002, "batch_size": 32, "models": ["cnn2d", "crnn"]},
          "models": {"cnn2d": {"dropout": 0.2}}}


def test_space_is_validated_against_params(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("train.lr: {type: float, low: 0.0001, high: 0.01, log: true}\n"
                    "train.batch_size: {type: categorical, choices: [16, 32]}\n")
    space = load_space(path, PARAMS)
    assert space["train.lr"].log and space["train.batch_size"].choices == [16, 32]

    path.write_text("train.lrr: {type: float, low: 0.1, high: 1}\n")
    with pytest.raises(ParamsError, match=r"space.yaml: train.lrr: not a key of params.yaml"):
        load_space(path, PARAMS)
    path.write_text("train.lr: {type: float, low: 0, high: 1, log: true}\n")
    with pytest.raises(ParamsError, match=r"train.lr: .*log scale needs low > 0"):
        load_space(path, PARAMS)
    path.write_text("train.lr: {type: normal, low: 0, high: 1}\n")
    with pytest.raises(ParamsError, match=r"train.lr.type"):
        load_space(path, PARAMS)
    with pytest.raises(ParamsError, match="no such search-space file"):
        load_space(tmp_path / "missing.yaml", PARAMS)


def test_dimensions_sample_inside_their_range():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    dims = {"a": Dimension(type="float", low=1e-4, high=1e-2, log=True),
            "b": Dimension(type="int", low=2, high=8, step=2),
            "c": Dimension(type="categorical", choices=["wrap", "zeros"])}
    for _ in range(20):
        trial = study.ask()
        values = {k: d.suggest(trial, k) for k, d in dims.items()}
        assert 1e-4 <= values["a"] <= 1e-2 and values["b"] in (2, 4, 6, 8)
        assert values["c"] in ("wrap", "zeros")
        study.tell(trial, 0.0)


def test_set_args_are_what_dvc_exp_run_parses():
    assert set_args({"train.lr": 0.00031622776601683794, "features.pad_mode": "zeros",
                     "train.models": ["cnn2d"], "train.batch_size": 16}) == [
        "-S", "train.lr=0.00031622776601683794", "-S", "features.pad_mode=zeros",
        "-S", "train.models=[cnn2d]", "-S", "train.batch_size=16"]


def _exp(name, metrics):
    return {"rev": "abc", "name": name, "data": {
        "params": {"params.yaml": {"data": PARAMS}},
        "metrics": {path: {"data": data} for path, data in metrics.items()}}}


def test_metric_is_the_best_model_or_an_explicit_file():
    exp = _exp("t-0", {"metrics/cnn2d.json": {"valid_lwlrap": 0.6, "lwlrap": 0.5},
                       "metrics/crnn.json": {"valid_lwlrap": 0.7, "lwlrap": 0.4},
                       "metrics/weights/cnn2d.json": {"summary": {"grad_ratio": 3.0}}})
    assert Metric("valid_lwlrap").read(exp) == 0.7
    assert Metric("metrics/cnn2d.json:lwlrap").read(exp) == 0.5
    assert Metric("metrics/weights/cnn2d.json:summary.grad_ratio").read(exp) == 3.0
    with pytest.raises(KeyError, match="metric 'f1' not found"):
        Metric("f1").read(exp)


def test_find_experiment_in_exp_show_output():
    shown = [{"rev": "workspace", "experiments": None},
             {"rev": "HEAD", "experiments": [{"name": "t-1", "revs": [_exp("t-1", {})]}]}]
    assert find_experiment(shown, "t-1")["name"] == "t-1"
    assert find_experiment(shown, "t-9") is None


def test_tune_without_optuna_says_which_extra_to_install(monkeypatch):
    import sys

    import audiotag
    from audiotag import cli

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if the extra were not installed
    monkeypatch.delitem(sys.modules, "audiotag.tune")
    monkeypatch.delattr(audiotag, "tune")
    with pytest.raises(SystemExit, match=r"audiotag\[tune\]"):
        cli.main(["tune", "--trials", "1"])
