"""The Optuna driver's parts that need no DVC run: search space, metric lookup, -S args."""

import json

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
    # ``++``: set the key, or add it where a model takes it from models.defaults
    assert set_args({"train.lr": 0.00031622776601683794, "features.pad_mode": "zeros",
                     "train.models": ["cnn2d"], "train.batch_size": 16}) == [
        "-S", "++train.lr=0.00031622776601683794", "-S", "++features.pad_mode=zeros",
        "-S", "++train.models=[cnn2d]", "-S", "++train.batch_size=16"]


def test_a_shared_model_option_is_tuned_per_model(tmp_path):
    """Issue 22: models.defaults holds the options every model shares; a space may still
    tune one model's copy (``models.cnn2d.dropout``), which ``++`` adds to its block."""
    params = {"train": {"lr": 0.001, "models": ["cnn2d"]}, "models": {"defaults": {"dropout": 0.2},
                                                 "cnn2d": {"channels": [8]}}}
    path = tmp_path / "space.yaml"
    path.write_text("models.cnn2d.dropout: {type: float, low: 0.0, high: 0.5}\n")
    assert set(load_space(path, params)) == {"models.cnn2d.dropout"}
    for key in ("models.cnn3d.dropout", "models.cnn2d.dropoutt", "models.defaults.x"):
        path.write_text(f"{key}: {{type: float, low: 0.0, high: 0.5}}\n")
        with pytest.raises(ParamsError, match=rf"{key}: not a key of params.yaml"):
            load_space(path, params)


def _exp(name, metrics):
    return {"rev": "abc", "name": name, "data": {
        "params": {"params.yaml": {"data": PARAMS}},
        "metrics": {path: {"data": data} for path, data in metrics.items()}}}


def test_metric_is_the_best_model_or_an_explicit_file():
    # headline files hold their numbers under their name (audiotag.core.headline)
    exp = _exp("t-0", {"metrics/cnn2d.json": {"cnn2d": {"valid_lwlrap": 0.6, "lwlrap": 0.5}},
                       "metrics/crnn.json": {"crnn": {"valid_lwlrap": 0.7, "lwlrap": 0.4}},
                       "metrics/weights/cnn2d.json": {"summary": {"grad_ratio": 3.0}}})
    assert Metric("valid_lwlrap").read(exp) == 0.7
    assert Metric("metrics/cnn2d.json:lwlrap").read(exp) == 0.5
    assert Metric("metrics/cnn2d.json:cnn2d.lwlrap").read(exp) == 0.5  # as dvc exp show names it
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


def test_storage_is_a_url_or_a_sqlite_file(tmp_path):
    from audiotag.tune import shown_url, storage_url

    assert storage_url(None, tmp_path, "s") == f"sqlite:///{tmp_path}/.tune/s.db"
    assert (tmp_path / ".tune").is_dir()
    assert storage_url(str(tmp_path / "x.db"), tmp_path, "s") == f"sqlite:///{tmp_path}/x.db"
    url = storage_url("postgresql://tuner:pw@db:5432/optuna", tmp_path, "s")
    assert url.startswith("postgresql") and url.endswith("://tuner:pw@db:5432/optuna")
    assert "pw" not in shown_url(url) and "tuner:***@db" in shown_url(url)


def test_a_dead_workers_trial_is_failed_and_retried_with_its_values(tmp_path):
    """A trial whose worker stopped sending heartbeats (kill -9) is failed by the next
    worker that opens the study, and re-queued with the same values; a trial that failed
    in its run is re-queued too, each only ``retries`` times."""
    import time

    from audiotag.tune import open_study, retry_failed

    url = f"sqlite:///{tmp_path}/s.db"
    study = open_study(url, "s", "maximize", 0, heartbeat=1, retries=1)
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study._storage.record_heartbeat(dead._trial_id)  # it ran, then its worker vanished
    time.sleep(5)  # grace: 3 heartbeats (SQLite clocks in whole seconds)
    study = open_study(url, "s", "maximize", 0, heartbeat=1, retries=1)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "WAITING"]
    retried = study.trials[1]
    assert retried.params == dead.params and retried.system_attrs["failed_trial"] == 0

    again = study.ask()  # a worker takes the queued retry: same values
    assert again.number == 1 and again.params == dead.params
    study.tell(again, state=optuna.trial.TrialState.FAIL)
    retry_failed(study, study.trials[1], retries=1)  # retried once already: no more
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    fresh = open_study(url, "s", "maximize", 0, heartbeat=1, retries=2)
    retry_failed(fresh, fresh.trials[1], retries=2)
    assert [t.state.name for t in fresh.trials][-1] == "WAITING"


def test_a_push_refused_for_a_name_taken_on_the_remote_fails_the_trial(monkeypatch, tmp_path):
    """`dvc exp push` exits 0 when the remote holds another experiment of the same name
    (say, a trial of an earlier study called the same): the trial must fail, not pass as
    pushed."""
    import json
    import subprocess

    from audiotag import tune

    exp = _exp("s-0", {"metrics/m.json": {"score": 0.5}})
    outputs = {"run": "", "show": json.dumps([{"rev": "HEAD", "experiments": [
        {"name": "s-0", "revs": [exp]}]}]),
        "push": "No experiments to push.\nLocal experiment s-0 has diverged from remote "
                "experiment with the same name.\nTo override the remote experiment re-run "
                "with '--force'.\n"}
    calls = []

    def fake_dvc(args, cwd):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, outputs[args[1]], "")

    monkeypatch.setattr(tune, "_dvc", fake_dvc)
    objective = tune.DvcObjective(tmp_path, {"x": Dimension(type="float", low=0, high=1)},
                                  Metric("metrics/m.json:score"), "s", {}, push="origin")
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(RuntimeError, match=r"s-0.*already on the remote.*--study"):
        objective(trial)
    assert calls[-1][:4] == ["exp", "push", "origin", "s-0"]


def test_workers_and_resumed_runs_do_not_repeat_each_others_samples(monkeypatch, tmp_path):
    """Each worker process opens the study with the same --seed; seeding the sampler once
    per process made every worker (and every resumed run) sample the same values. The
    values of trial n depend on (seed, n) instead: different across trials, reproducible."""
    import json
    import subprocess

    from audiotag import tune

    def fake_dvc(args, cwd):  # every trial "runs" and scores 0.5
        name = args[args.index("--name") + 1] if "--name" in args else None
        if name:
            fake_dvc.last = name
            return subprocess.CompletedProcess(args, 0, "", "")
        exp = _exp(fake_dvc.last, {"metrics/m.json": {"score": 0.5}})
        shown = [{"rev": "HEAD", "experiments": [{"name": fake_dvc.last, "revs": [exp]}]}]
        return subprocess.CompletedProcess(args, 0, json.dumps(shown), "")

    monkeypatch.setattr(tune, "_dvc", fake_dvc)
    space = {"x": Dimension(type="float", low=0, high=1)}
    url = f"sqlite:///{tmp_path}/s.db"
    for _ in range(3):  # three worker processes, one trial each
        study = tune.open_study(url, "s", "maximize", seed=0)
        objective = tune.DvcObjective(tmp_path, space, Metric("metrics/m.json:score"), "s",
                                      {}, seed=0)
        study.optimize(objective, n_trials=1)
    values = [t.params["x"] for t in study.trials]
    assert len(set(values)) == 3, values

    again = tune.open_study(f"sqlite:///{tmp_path}/t.db", "t", "maximize", seed=0)
    again.optimize(tune.DvcObjective(tmp_path, space, Metric("metrics/m.json:score"), "t",
                                     {}, seed=0), n_trials=1)
    assert again.trials[0].params == study.trials[0].params  # the same seed, the same start


def test_a_dimension_over_a_model_that_is_not_trained_is_refused(tmp_path, repo_root):
    # issue 33 item 5: tune.yaml searched models.cnn2d.dropout while train.models had no
    # cnn2d, so one of the default study's dimensions did nothing
    import yaml

    params = {"train": {"models": ["cnn1d", "crnn"]}, "cv": {"models": []},
              "clean": {"method": "cleanlab", "detector": {"model": "cnn1d"}},
              "models": {"defaults": {"dropout": 0.2}, "cnn2d": {"dropout": 0.1}, "crnn": {},
                         "cnn1d": {}}}
    path = tmp_path / "space.yaml"
    path.write_text("models.cnn2d.dropout: {type: float, low: 0.0, high: 0.5}\n")
    with pytest.raises(ParamsError, match=r"space\.yaml: models\.cnn2d\.dropout: cnn2d is not "
                                          r"trained \(train\.models: cnn1d, crnn"):
        load_space(path, params)
    for key in ("models.crnn.dropout", "models.cnn1d.dropout", "models.defaults.dropout"):
        path.write_text(f"{key}: {{type: float, low: 0.0, high: 0.5}}\n")
        load_space(path, params)  # trained, the cleaning detector, or every model
    path.write_text("models.cnn2d.dropout: {type: float, low: 0.0, high: 0.5}\n"
                    "train.models: {type: categorical, choices: [[crnn], [cnn2d]]}\n")
    load_space(path, params)  # trained in the trials that choose it
    path.write_text("models.cnn2d.dropout: {type: float, low: 0.0, high: 0.5}\n")
    load_space(path, params, {"train.models": ["cnn2d"]})  # --set for every trial
    repo = yaml.safe_load((repo_root / "params.yaml").read_text())
    load_space(repo_root / "tune.yaml", repo)  # the default study


def test_a_grid_runs_each_dimension_s_choices_or_steps():
    from audiotag.tune import grid_size

    space = {"a": Dimension(type="categorical", choices=["wrap", "zeros"]),
             "b": Dimension(type="int", low=2, high=8, step=2),
             "c": Dimension(type="float", low=0.1, high=0.3, step=0.1)}
    assert space["b"].grid_values("b") == [2, 4, 6, 8]
    assert space["c"].grid_values("c") == [0.1, 0.2, 0.3]
    assert grid_size(space) == 2 * 4 * 3
    with pytest.raises(ParamsError, match=r"--grid: train.lr: a grid needs `choices` or a "
                                          r"`step` \(a float on a log scale"):
        Dimension(type="float", low=1e-4, high=1e-2, log=True).grid_values("train.lr")


def test_the_curve_the_tuner_watches_is_what_train_writes(repo_root):
    """tune.CURVE is dvclive's file under train@'s ``--live`` directory (dvc.yaml) for the
    metric train logs as ``valid/lwlrap``."""
    import yaml

    from audiotag.tune import CURVE

    cmd = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]["train"]["do"]["cmd"]
    live = cmd.split("--live ", 1)[1].split()[0].replace("${item}", "{model}")
    assert CURVE == f"{live}/plots/metrics/valid/lwlrap.tsv"
    run_py = (repo_root / "src/audiotag/training/run.py").read_text()
    assert 'live.log_metric("valid/lwlrap"' in run_py


def _running_experiment(repo, name, root):
    """What DVC keeps of a running ``dvc exp run --temp --name <name>`` in ``root``."""
    info = repo / ".dvc/tmp/exps/run/abc123/abc123.run"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"name": name, "root_dir": str(root), "git_url": "x"}))


def test_a_trial_s_curve_is_read_from_its_temporary_workspace(tmp_path):
    from audiotag.tune import CURVE, TrialWatch

    repo, root = tmp_path / "repo", tmp_path / "tmpexp"
    watch = TrialWatch(repo, "tune-3", ["cnn2d", "crnn"])
    assert watch.curve() == []  # the experiment has not started
    _running_experiment(repo, "tune-3", root)
    assert watch.curve() == []  # no epoch yet
    for model, values in (("cnn2d", [0.4, 0.3, 0.6]), ("crnn", [0.5])):
        path = root / CURVE.format(model=model)
        path.parent.mkdir(parents=True)
        path.write_text("step\tlwlrap\n" + "".join(f"{i + 1}\t{v}\n"
                                                   for i, v in enumerate(values)) + "4\t0.")
    # best so far per model; per epoch, the best of the models that reached it
    assert watch.curve() == [0.5, 0.4, 0.6]  # a line being written is not read


def test_pruning_a_minimised_metric_is_refused(tmp_path):
    """The pruner compares per-epoch validation lwlrap (higher is better)."""
    from audiotag.tune import Strategy, tune

    (tmp_path / "params.yaml").write_text(json.dumps(PARAMS))
    (tmp_path / "space.yaml").write_text("train.lr: {type: float, low: 0.0001, high: 0.01}\n")
    with pytest.raises(ParamsError, match="--pruner median: .* needs --direction maximize"):
        tune(tmp_path, tmp_path / "space.yaml", Metric("valid_loss"), 4, "s",
             f"sqlite:///{tmp_path / 's.db'}", "minimize", {}, 0,
             strategy=Strategy(pruner="median"))
    assert not (tmp_path / "s.db").exists()  # refused before the study was opened


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_the_pruners_stop_a_bad_curve_before_its_last_epoch(pruner):
    """The pruners as configured, fed 12-epoch curves as the tuner reports them (steps 1..11,
    the last epoch never): good trials run out, a bad one is stopped early. The median
    pruner waits for 4 finished trials and never stops at epoch 1."""
    from audiotag.tune import Strategy

    study = optuna.create_study(direction="maximize", study_name="s",  # hyperband's brackets
                                pruner=Strategy(pruner=pruner).make_pruner(),
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def run(curve):
        trial = study.ask()
        for step, value in enumerate(curve[:-1], 1):
            trial.report(value, step)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                return step
        study.tell(trial, curve[-1])
        return None

    good = [[0.3 + 0.04 * e + 0.01 * k for e in range(12)] for k in range(6)]
    bad = [0.1] * 12
    if pruner == "median":
        assert run(bad) is None  # among the first 4 trials: nothing to compare with
        assert all(run(curve) is None for curve in good[:4])
        trial = study.ask()
        trial.report(0.0, 1)
        assert not trial.should_prune()  # epoch 1: never
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        assert all(run(curve) is None for curve in good)
    stopped = run(bad)
    assert stopped is not None and stopped < 11, stopped


def test_a_pruned_run_saved_before_the_stop_leaves_no_experiment(monkeypatch, tmp_path):
    """The race the e2e pruning test met under load: the run finishes its last epochs and
    DVC saves the experiment between the pruner's look and the stop; the pruned trial's
    experiment is removed then, so `dvc exp show` does not list a pruned trial."""
    from audiotag import tune

    class Finished:  # `dvc exp run` as the poll saw it (running), already gone at the stop
        pid, args, returncode = 2**22 + 4321, [], 0  # a pid no process has

        def poll(self):
            return None

        def wait(self):
            return 0

    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    class Watch:
        def curve(self):
            return [0.1] * 5

    calls = []
    monkeypatch.setattr(tune.subprocess, "Popen", lambda *a, **k: Finished())
    monkeypatch.setattr(tune, "_dvc", lambda args, cwd: calls.append(args))
    trial = optuna.create_study(direction="maximize", pruner=Always()).ask()
    with pytest.raises(optuna.TrialPruned, match="pruned after epoch 1"):
        tune.run_trial(trial, ["exp", "run", "--temp", "--name", "grid-4"], tmp_path, Watch(),
                       epochs=6, poll=0)
    assert calls == [["exp", "remove", "grid-4"]]
