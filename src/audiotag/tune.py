"""Hyper-parameter search with Optuna where every trial is a real DVC experiment.

    python -m audiotag.tune --trials 20                  # search space: tune.yaml

Each trial samples values from the search space (a YAML file mapping params.yaml keys to
distributions), runs ``dvc exp run --temp --name <study>-<n> -S ++key=value ...`` and reads
the metric back from ``dvc exp show --json``, so every trial is an experiment with its
metrics and plots (``dvc exp show``, ``dvc plots diff``, ``dvc exp apply``). The study lives
in SQLite (default ``.tune/<study>.db``): run the same command again after an interruption
and the search continues until ``--trials`` trials have completed.

Several machines share one study through a database server (``--storage`` takes any
SQLAlchemy URL, e.g. ``postgresql://tuner@db.example.org/optuna``): each runs the same
command in its own clone, claims trials through the database, and with ``--push origin``
pushes each finished trial (``dvc exp push``: git refs to the git remote, outputs to the DVC
remote), so ``dvc exp pull`` on any clone brings the whole study. A trial whose worker died
(no heartbeat for a while) or whose run failed is retried with the same values.

Search space format (``tune.yaml``)::

    train.lr:         {type: float, low: 0.0003, high: 0.01, log: true}
    train.batch_size: {type: categorical, choices: [16, 32, 64]}
    models.crnn.dropout: {type: float, low: 0.0, high: 0.5}
    features.n_mels:  {type: int, low: 32, high: 128, step: 32}
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from audiotag.core.errors import ParamsError
from audiotag.core.headline import headline_values
from audiotag.core.params import format_validation_error, get_dotted, has_dotted, read_params
from audiotag.core.stage import run_stage

log = logging.getLogger("tune")


class Dimension(BaseModel):
    """One searched param: ``float`` / ``int`` in [low, high] (optionally log), or
    ``categorical`` over ``choices``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str = Field(pattern="^(float|int|categorical)$")
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> Dimension:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty `choices` list")
            if self.low is not None or self.high is not None:
                raise ValueError("categorical takes `choices`, not low/high")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type} takes low/high, not `choices`")
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"{self.type} needs low < high")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log scale and step cannot be combined")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high),
                                     step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


def _lookup(params: dict[str, Any], dotted: str) -> bool:
    """Whether ``dotted`` is a key of params.yaml, or a model's copy of a shared option
    (``models.<name>.<key>`` with ``<key>`` in ``models.defaults``)."""
    if has_dotted(params, dotted):
        return True
    group, name, key = (dotted.split(".", 2) + ["", ""])[:3]
    models = params.get("models") or {}
    return (group == "models" and name != "defaults" and name in models
            and "." not in key and key in (models.get("defaults") or {}))


def load_space(path: str | Path, params: dict[str, Any],
               fixed: dict[str, Any] | None = None) -> dict[str, Dimension]:
    """Read and validate a search-space YAML file; every key must exist in params.yaml, and
    a ``models.<name>.*`` key must name a model that is trained (in params.yaml, with the
    ``fixed`` ``--set`` values over it, or among a dimension's choices)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such search-space file") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict) or not raw:
        raise ParamsError(f"{path}: expected a mapping of params.yaml keys to distributions")
    space = {}
    for key, spec in raw.items():
        if not _lookup(params, key):
            raise ParamsError(f"{path}: {key}: not a key of params.yaml")
        if not isinstance(spec, dict):
            raise ParamsError(f"{path}: {key}: expected a mapping such as "
                              "{type: float, low: 0.0001, high: 0.01, log: true}")
        try:
            space[key] = Dimension.model_validate(spec)
        except ValidationError as err:
            raise ParamsError(format_validation_error(err, key, str(path))) from None
    _check_trained(path, space, params, fixed or {})
    return space


# keys naming the models a run trains: what a models.<name>.* dimension must be among
_MODEL_LISTS = ("train.models", "cv.models")
_DETECTOR = "clean.detector.model"


def _value(params: dict[str, Any], fixed: dict[str, Any], dotted: str) -> Any:
    """``dotted``'s value: a ``--set`` one, else params.yaml's (None where absent)."""
    if dotted in fixed:
        return fixed[dotted]
    return get_dotted(params, dotted)


def _trained(space: dict[str, Dimension], params: dict[str, Any],
             fixed: dict[str, Any]) -> set[str]:
    """Every model some trial trains: ``train.models``, ``cv.models``, the label-cleaning
    detector (unless ``clean.method`` is none or oracle), and the choices of a dimension
    over one of those keys."""
    names = {m for key in _MODEL_LISTS for m in _value(params, fixed, key) or []}
    if _value(params, fixed, "clean.method") not in ("none", "oracle"):
        names.add(_value(params, fixed, _DETECTOR))
    for key in (*_MODEL_LISTS, _DETECTOR):
        for choice in space[key].choices or [] if key in space else []:
            names.update(choice if isinstance(choice, list) else [choice])
    return {name for name in names if isinstance(name, str)}


def _check_trained(path: Path, space: dict[str, Dimension], params: dict[str, Any],
                   fixed: dict[str, Any]) -> None:
    """A ``models.<name>.*`` dimension tunes a model that is trained: otherwise it changes
    nothing and the study wastes a dimension (``models.defaults.*`` reach every model)."""
    trained = _trained(space, params, fixed)
    for key in space:
        group, name = (key.split(".") + [""])[:2]
        if group == "models" and name != "defaults" and name not in trained:
            models = ", ".join(_value(params, fixed, "train.models") or []) or "none"
            raise ParamsError(f"{path}: {key}: {name} is not trained (train.models: {models}), "
                              f"so this dimension would change nothing; tune a trained "
                              f"model's key, or models.defaults.{key.split('.', 2)[-1]}")


@dataclass(frozen=True)
class Metric:
    """``valid_lwlrap`` (best over the trial's models' ``metrics/<model>.json``) or an
    explicit ``metrics/cnn2d.json:lwlrap`` (a headline file's numbers are found under its
    name; other nested keys with dots: ``file.json:best.valid_lwlrap``)."""

    spec: str

    def read(self, exp: dict[str, Any]) -> float:
        metrics = exp["data"].get("metrics") or {}
        if ":" in self.spec:
            path, key = self.spec.split(":", 1)
            candidates = [(path, key)]
        else:
            models = exp["data"]["params"]["params.yaml"]["data"]["train"]["models"]
            candidates = [(f"metrics/{m}.json", self.spec) for m in models]
        values = []
        for path, key in candidates:
            data: Any = (metrics.get(path) or {}).get("data") or {}
            # a headline file's numbers sit under its name (audiotag.core.headline)
            for tree in (data, headline_values(data, Path(path).stem)):
                node = get_dotted(tree, key)
                if isinstance(node, int | float) and not isinstance(node, bool):
                    values.append(float(node))
                    break
        if not values:
            raise KeyError(f"metric {self.spec!r} not found in the experiment's metrics "
                           f"(files: {', '.join(sorted(metrics)) or 'none'})")
        return max(values)


def _cli_value(value: Any) -> str:
    """A value as ``-S key=<yaml>`` expects it (floats in full precision)."""
    return repr(value) if isinstance(value, float) else yaml.safe_dump(
        value, default_flow_style=True).strip().removesuffix("...").strip()


def set_args(values: dict[str, Any]) -> list[str]:
    """``-S ++key=value`` per key: sets it, or adds a model's own copy of a shared option
    (``models.cnn2d.dropout`` over ``models.defaults``); keys are checked by :func:`_lookup`."""
    args = []
    for key, value in values.items():
        args += ["-S", f"++{key}={_cli_value(value)}"]
    return args


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=cwd, capture_output=True, text=True)


def find_experiment(shown: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The ``dvc exp show --json`` record of the experiment called ``name``."""
    for rev in shown:
        for exp in rev.get("experiments") or []:
            for run in exp.get("revs") or []:
                if run.get("name") == name or exp.get("name") == name:
                    return run
    return None


class DvcObjective:
    """Runs one trial as ``dvc exp run --temp`` and returns its metric."""

    def __init__(self, repo: Path, space: dict[str, Dimension], metric: Metric,
                 study_name: str, fixed: dict[str, Any], push: str | None = None,
                 dvc_remote: str | None = None, seed: int = 0) -> None:
        self.repo, self.space, self.metric = repo, space, metric
        self.study_name, self.fixed = study_name, fixed
        self.push, self.dvc_remote, self.seed = push, dvc_remote, seed

    def __call__(self, trial: optuna.Trial) -> float:
        # the sampler's random state from (seed, trial number): a sampler seeded once per
        # process would draw the same values in every worker and every resumed run.
        # constant_liar: TPE treats the other workers' running trials as bad results, so
        # it does not sample next to them
        trial.study.sampler = optuna.samplers.TPESampler(seed=self.seed + trial.number,
                                                         constant_liar=True)
        values = {key: dim.suggest(trial, key) for key, dim in self.space.items()}
        name = f"{self.study_name}-{trial.number}"
        trial.set_user_attr("experiment", name)
        args = ["exp", "run", "--temp", "--name", name, *set_args({**self.fixed, **values})]
        log.info("trial %d: dvc %s", trial.number, " ".join(args))
        result = _dvc(args, self.repo)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"trial {trial.number}: `dvc exp run` failed "
                               f"({result.returncode}): " + " | ".join(tail))
        shown = _dvc(["exp", "show", "--json"], self.repo)
        if shown.returncode != 0:
            raise RuntimeError(f"`dvc exp show --json` failed: {shown.stderr.strip()}")
        exp = find_experiment(json.loads(shown.stdout), name)
        if exp is None:
            raise RuntimeError(f"experiment {name!r} does not appear in `dvc exp show`")
        value = self.metric.read(exp)
        log.info("trial %d (%s): %s = %.6f", trial.number, name, self.metric.spec, value)
        if self.push:  # git refs to the git remote, outputs to the (default) DVC remote
            pushed = _dvc(["exp", "push", self.push, name,
                           *(["--remote", self.dvc_remote] if self.dvc_remote else [])],
                          self.repo)
            said = (pushed.stdout + pushed.stderr).strip()
            if pushed.returncode != 0:
                raise RuntimeError(f"trial {trial.number}: `dvc exp push {self.push} {name}` "
                                   f"failed: {said}")
            if "diverged from remote experiment" in said:  # dvc exits 0 here
                raise RuntimeError(f"trial {trial.number}: another experiment {name!r} is "
                                   f"already on the remote {self.push} (an earlier study of "
                                   "the same name?); use another --study name")
        return value


def storage_url(storage: str | None, repo: Path, study_name: str) -> str:
    """The study's SQLAlchemy URL: ``storage`` as given when it is a URL, a SQLite file
    otherwise (default ``<repo>/.tune/<study>.db``). ``postgresql://`` uses psycopg 3 (the
    ``tune`` extra) unless psycopg2 is installed."""
    if storage and "://" in storage:
        if storage.startswith("postgresql://") and not _importable("psycopg2"):
            storage = "postgresql+psycopg://" + storage.removeprefix("postgresql://")
        return storage
    path = Path(storage) if storage else repo / ".tune" / f"{study_name}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path.resolve()}"


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def shown_url(url: str) -> str:
    """``url`` for the log, its password masked."""
    return make_url(url).render_as_string(hide_password=True)


def open_study(url: str, name: str, direction: str, seed: int, heartbeat: int = 30,
               retries: int = 1) -> optuna.Study:
    """Create or load the study at ``url``. A running trial that sent no heartbeat for
    ``3 * heartbeat`` seconds (its worker died: kill -9, power cut, lost network) is failed
    by whichever worker looks next and re-queued with the same values (``retries`` times)."""
    # renamed in optuna 4.9 (the old names are deprecated there)
    renamed = "heartbeat_stale_trial_callback" in inspect.signature(
        optuna.storages.RDBStorage).parameters
    on_stale = {"heartbeat_stale_trial_callback" if renamed else "failed_trial_callback":
                _retry_callback(retries)}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeats: "experimental" since optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat, **on_stale)
            study = optuna.create_study(storage=storage, study_name=name,
                                        direction=direction, load_if_exists=True,
                                        sampler=optuna.samplers.TPESampler(seed=seed))
            break
        except SQLAlchemyError as err:  # two workers creating the tables at once: one loses
            if attempt == 4:
                raise
            log.info("opening the study failed (%s), retrying", type(err).__name__)
            time.sleep(1 + attempt)
    _fail_stale(study)
    return study


def _retry_callback(retries: int) -> Any:
    """Optuna's callback that re-queues a failed trial with its values, ``retries`` times."""
    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or \
        optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(max_retry=retries)


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():  # experimental since optuna 2.9, unchanged since
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def completed(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def _count(trials: list[optuna.trial.FrozenTrial], *states: optuna.trial.TrialState) -> int:
    return sum(t.state in states for t in trials)


def retry_failed(study: optuna.Study, trial: optuna.trial.FrozenTrial, retries: int) -> None:
    """Re-queue a failed trial with the same values (until it has been retried
    ``retries`` times); the next ``ask`` of any worker takes it."""
    if trial.state == optuna.trial.TrialState.FAIL:
        _retry_callback(retries)(study, trial)


def tune(repo: Path, space_path: Path, metric: Metric, trials: int, study_name: str,
         storage: str, direction: str, fixed: dict[str, Any], seed: int,
         push: str | None = None, dvc_remote: str | None = None, retries: int = 1,
         heartbeat: int = 30, poll: float = 5.0) -> optuna.Study:
    """Run trials until the study (shared with any other worker) has ``trials`` completed.

    Trials are claimed through the database: this worker starts one only while completed
    + running + queued trials are fewer than ``trials``, and otherwise waits for the other
    workers' running trials (one that fails or goes stale is retried here or there)."""
    params = read_params(repo / "params.yaml")
    space = load_space(space_path, params, fixed)
    for key in fixed:
        if not _lookup(params, key):
            raise ParamsError(f"--set {key}: not a key of params.yaml")
    study = open_study(storage, study_name, direction, seed, heartbeat, retries)
    done = len(completed(study))
    log.info("study %s (%s): %d trial(s) completed, running %d more", study_name,
             shown_url(storage), done, max(trials - done, 0))
    objective = DvcObjective(repo, space, metric, study_name, fixed, push, dvc_remote, seed)
    states = optuna.trial.TrialState
    while True:
        _fail_stale(study)  # dead workers' trials: failed, re-queued
        all_trials = study.get_trials(deepcopy=False)
        if _count(all_trials, states.COMPLETE) >= trials:
            break
        failures = _count(all_trials, states.FAIL)
        if failures >= max(3, trials):
            raise RuntimeError(f"{failures} trials failed; see the log above")
        if _count(all_trials, states.COMPLETE, states.RUNNING, states.WAITING) >= trials:
            time.sleep(poll)  # the last trials run elsewhere; they may still fail
            continue
        # one at a time, so a failed trial is replaced, not counted
        study.optimize(objective, n_trials=1, catch=(RuntimeError, KeyError),
                       callbacks=[lambda s, t: retry_failed(s, t, retries)])
    report(study, metric)
    return study


def report(study: optuna.Study, metric: Metric) -> None:
    done = completed(study)
    if not done:
        log.warning("no completed trial yet")
        return
    for t in sorted(done, key=lambda t: t.number):
        log.info("  trial %3d  %-24s %s=%.6f  %s", t.number, t.user_attrs.get("experiment"),
                 metric.spec, t.value, t.params)
    best = study.best_trial
    log.info("best: trial %d, experiment %s, %s = %.6f, params %s", best.number,
             best.user_attrs.get("experiment"), metric.spec, best.value, best.params)
    log.info("bring it into the workspace with: dvc exp apply %s",
             best.user_attrs.get("experiment"))


def _parse_set(items: list[str]) -> dict[str, Any]:
    fixed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"--set {item!r}: expected key=value")
        fixed[key] = yaml.safe_load(value)
    return fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20,
                        help="completed trials to reach (a resumed study counts earlier ones)")
    parser.add_argument("--metric", default="valid_lwlrap",
                        help="a key of metrics/<model>.json (best over the trial's models) "
                             "or file:key, e.g. metrics/cnn2d.json:lwlrap. The default is "
                             "the validation lwlrap: choosing by test lwlrap would tune on "
                             "the test set")
    parser.add_argument("--direction", choices=("maximize", "minimize"), default="maximize")
    parser.add_argument("--space", default="tune.yaml", help="search-space YAML file")
    parser.add_argument("--study", default="tune", help="study name (prefix of experiment names)")
    parser.add_argument("--storage", default=os.environ.get("AUDIOTAG_TUNE_STORAGE"),
                        help="the study's database: a SQLAlchemy URL shared by workers on "
                             "several machines (postgresql://user@host/db; the password in "
                             "PGPASSWORD or ~/.pgpass, not here) or a SQLite file; default: "
                             "$AUDIOTAG_TUNE_STORAGE, else .tune/<study>.db")
    parser.add_argument("--push", default=None, metavar="GIT_REMOTE",
                        help="push each finished trial with `dvc exp push GIT_REMOTE` "
                             "(outputs to the DVC remote), e.g. origin")
    parser.add_argument("--dvc-remote", default=None,
                        help="DVC remote of --push (default: the project's default remote)")
    parser.add_argument("--retries", type=int, default=1,
                        help="times a failed or stale trial is re-run with the same values")
    parser.add_argument("--heartbeat", type=int, default=30,
                        help="seconds between a running trial's heartbeats; after 3 missed "
                             "ones its worker counts as dead and the trial is retried")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a fixed param for every trial (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler")
    parser.add_argument("--repo", default=".", help="the DVC project (default: here)")
    args = parser.parse_args()
    if args.trials < 1:
        raise ParamsError("--trials: must be at least 1")
    if args.retries < 0 or args.heartbeat < 1:
        raise ParamsError("--retries: must be >= 0; --heartbeat: must be >= 1 second")
    repo = Path(args.repo).resolve()
    storage = storage_url(args.storage, repo, args.study)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our log says what matters
    try:
        study = tune(repo, repo / args.space, Metric(args.metric), args.trials, args.study,
                     storage, args.direction, _parse_set(args.set), args.seed,
                     push=args.push, dvc_remote=args.dvc_remote, retries=args.retries,
                     heartbeat=args.heartbeat)
    except RuntimeError as err:  # failed trials: the message says which and why
        log.error("error: %s", err)
        sys.exit(1)
    if not completed(study) or math.isnan(study.best_value):
        log.error("error: the search finished without a completed trial")
        sys.exit(1)


if __name__ == "__main__":
    run_stage(main)
