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

A trial reports its validation lwlrap after each epoch (read from dvclive's files in the
experiment's temporary copy while it trains), and ``--pruner median|hyperband`` stops one
that falls behind the others before its last epoch. ``--grid`` runs every point of the
space instead of sampling (Optuna's ``GridSampler``): workers pull grid points from the
shared study, so a dead worker's point is re-run by another.

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
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import psutil
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

    def grid_values(self, name: str) -> list[Any]:
        """The values a grid (``audiotag tune --grid``) runs: the choices, or low..high by
        ``step`` (1 for an int)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int" and not self.log:
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.type == "float" and self.step is not None:
            count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
            return [round(self.low + i * self.step, 12) for i in range(count)]
        raise ParamsError(f"--grid: {name}: a grid needs `choices` or a `step` "
                          f"(a {self.type}{' on a log scale' if self.log else ''} has "
                          "no finite set of values)")

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


# dvclive's per-epoch validation lwlrap of train@<model> (its `--live metrics/train/<model>`
# in dvc.yaml; tests/unit/test_tune.py keeps the two in step)
CURVE = "metrics/train/{model}/plots/metrics/valid/lwlrap.tsv"


class TrialWatch:
    """The per-epoch validation lwlrap of a trial while ``dvc exp run --temp`` trains it,
    read from dvclive's files in the experiment's temporary workspace (found through the
    ``.dvc/tmp/exps/run/*/*.run`` record DVC keeps of each running experiment)."""

    def __init__(self, repo: Path, name: str, models: list[str]) -> None:
        self.repo, self.name, self.models = repo, name, models
        self.root: Path | None = None

    def _workspace(self) -> Path | None:
        for info in (self.repo / ".dvc" / "tmp" / "exps" / "run").glob("*/*.run"):
            try:
                record = json.loads(info.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # being written
                continue
            if record.get("name") == self.name and record.get("root_dir"):
                return Path(record["root_dir"])
        return None

    def curve(self) -> list[float]:
        """Best-so-far validation lwlrap after each epoch (with several models, the best of
        those that have reached that epoch); ``[]`` before the first epoch ends."""
        self.root = self.root or self._workspace()
        if self.root is None:
            return []
        curves = []
        for model in self.models:
            try:
                text = (self.root / CURVE.format(model=model)).read_text()
                lines = text.split("\n")[1:-1]  # not the header, nor a line being written
                values = [float(line.split("\t")[1]) for line in lines]
            except (OSError, ValueError, IndexError):  # not there yet, or half a line
                continue
            curves.append([max(values[:i + 1]) for i in range(len(values))])
        steps = max((len(c) for c in curves), default=0)
        return [max(c[i] for c in curves if len(c) > i) for i in range(steps)]


def _stop(proc: subprocess.Popen) -> None:
    """End a pruned trial's ``dvc exp run`` and its stage's command: Ctrl-C (DVC removes its
    temporary copy), then a kill. They share the tuner's process group, so a worker killed
    as a whole (a machine going down, ``kill -- -<pgid>``) takes its trial with it."""
    try:
        tree = [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]
    except psutil.NoSuchProcess:
        return
    for sig, wait in ((signal.SIGINT, 60), (signal.SIGKILL, 30)):
        for process in tree:
            try:
                process.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        _, tree = psutil.wait_procs(tree, timeout=wait)
        if not tree:
            break
    proc.wait()


def _forget(args: list[str], repo: Path) -> None:
    """Remove a stopped run's experiment (``--name`` in ``args``) if it was saved anyway: the
    run can finish its last epochs and be saved between the pruner's look and the stop."""
    if "--name" in args:
        _dvc(["exp", "remove", args[args.index("--name") + 1]], repo)  # absent: nothing


def run_trial(trial: optuna.Trial, args: list[str], repo: Path, watch: TrialWatch | None,
              epochs: int, poll: float = 2.0) -> subprocess.CompletedProcess:
    """``dvc <args>``; with ``watch``, each finished epoch is reported to the trial and a
    trial the pruner stops (before its last epoch) is ended: :class:`optuna.TrialPruned`."""
    if watch is None:
        return _dvc(args, repo)
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(["dvc", *args], cwd=repo, stdout=out, stderr=out, text=True)
        reported = 0
        while True:
            done = proc.poll() is not None
            curve = watch.curve()
            for step in range(reported, min(len(curve), epochs - 1)):  # the last: no prune
                trial.report(curve[step], step + 1)
                reported = step + 1
                if not done and trial.should_prune():
                    _stop(proc)
                    _forget(args, repo)
                    raise optuna.TrialPruned(f"pruned after epoch {step + 1}: "
                                             f"valid lwlrap {curve[step]:.4f}")
            if done:
                break
            time.sleep(poll)
        out.seek(0)
        text = out.read()
    return subprocess.CompletedProcess(proc.args, proc.returncode, text, text)


class DvcObjective:
    """Runs one trial as ``dvc exp run --temp`` and returns its metric; with ``prune``, the
    trial reports each epoch's validation lwlrap and may be stopped early."""

    def __init__(self, repo: Path, space: dict[str, Dimension], metric: Metric,
                 study_name: str, fixed: dict[str, Any], push: str | None = None,
                 dvc_remote: str | None = None, seed: int = 0, grid: bool = False,
                 prune: bool = False) -> None:
        self.repo, self.space, self.metric = repo, space, metric
        self.study_name, self.fixed = study_name, fixed
        self.push, self.dvc_remote, self.seed = push, dvc_remote, seed
        self.grid, self.prune = grid, prune
        self.params = read_params(repo / "params.yaml") if prune else {}

    def __call__(self, trial: optuna.Trial) -> float:
        if not self.grid:
            # the sampler's random state from (seed, trial number): a sampler seeded once
            # per process would draw the same values in every worker and every resumed run.
            # constant_liar: TPE treats the other workers' running trials as bad results,
            # so it does not sample next to them
            trial.study.sampler = optuna.samplers.TPESampler(seed=self.seed + trial.number,
                                                             constant_liar=True)
        values = {key: dim.suggest(trial, key) for key, dim in self.space.items()}
        name = f"{self.study_name}-{trial.number}"
        trial.set_user_attr("experiment", name)
        args = ["exp", "run", "--temp", "--name", name, *set_args({**self.fixed, **values})]
        log.info("trial %d: dvc %s", trial.number, " ".join(args))
        chosen = {**self.fixed, **values}
        watch = TrialWatch(self.repo, name, _value(self.params, chosen, "train.models") or []) \
            if self.prune else None
        epochs = int(_value(self.params, chosen, "train.epochs") or 0) if self.prune else 0
        result = run_trial(trial, args, self.repo, watch, epochs)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"trial {trial.number}: `dvc exp run` failed "
                               f"({result.returncode}): " + " | ".join(tail))
        value = self._metric(trial, name)
        if self.push:
            self._push(trial, name)
        return value

    def _metric(self, trial: optuna.Trial, name: str) -> float:
        shown = _dvc(["exp", "show", "--json"], self.repo)
        if shown.returncode != 0:
            raise RuntimeError(f"`dvc exp show --json` failed: {shown.stderr.strip()}")
        exp = find_experiment(json.loads(shown.stdout), name)
        if exp is None:
            raise RuntimeError(f"experiment {name!r} does not appear in `dvc exp show`")
        value = self.metric.read(exp)
        log.info("trial %d (%s): %s = %.6f", trial.number, name, self.metric.spec, value)
        return value

    def _push(self, trial: optuna.Trial, name: str) -> None:
        """Git refs to the git remote, outputs to the (default) DVC remote."""
        pushed = _dvc(["exp", "push", self.push, name,
                       *(["--remote", self.dvc_remote] if self.dvc_remote else [])], self.repo)
        said = (pushed.stdout + pushed.stderr).strip()
        if pushed.returncode != 0:
            raise RuntimeError(f"trial {trial.number}: `dvc exp push {self.push} {name}` "
                               f"failed: {said}")
        if "diverged from remote experiment" in said:  # dvc exits 0 here
            raise RuntimeError(f"trial {trial.number}: another experiment {name!r} is "
                               f"already on the remote {self.push} (an earlier study of "
                               "the same name?); use another --study name")


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
               retries: int = 1, sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
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
                                        sampler=sampler or optuna.samplers.TPESampler(seed=seed),
                                        pruner=pruner or optuna.pruners.NopPruner())
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


PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class Strategy:
    """How the study picks trials: TPE (``trials`` of them) or every point of a grid
    (``grid``); and how it stops bad ones early (``pruner``, on per-epoch validation
    lwlrap; ``none``: every trial trains all its epochs)."""

    grid: bool = False
    pruner: str = "none"

    def sampler(self, space: dict[str, Dimension], seed: int) -> optuna.samplers.BaseSampler:
        if not self.grid:
            return optuna.samplers.TPESampler(seed=seed)
        return optuna.samplers.GridSampler(
            {key: dim.grid_values(key) for key, dim in space.items()}, seed=seed)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        # median: a trial stops once its best lwlrap so far is below the median of the
        # earlier trials at that epoch; not among the first 4 trials, nor at epoch 1
        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2)
        if self.pruner == "hyperband":  # epochs are the resource; max: the trials' own
            return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
        return optuna.pruners.NopPruner()


def grid_size(space: dict[str, Dimension]) -> int:
    return math.prod(len(dim.grid_values(key)) for key, dim in space.items())


def tune(repo: Path, space_path: Path, metric: Metric, trials: int | None, study_name: str,
         storage: str, direction: str, fixed: dict[str, Any], seed: int,
         push: str | None = None, dvc_remote: str | None = None, retries: int = 1,
         heartbeat: int = 30, poll: float = 5.0,
         strategy: Strategy = Strategy()) -> optuna.Study:
    """Run trials until the study (shared with any other worker) has ``trials`` finished
    (completed or pruned; with a grid, one per grid point).

    Trials are claimed through the database: this worker starts one only while finished
    + running + queued trials are fewer than ``trials``, and otherwise waits for the other
    workers' running trials (one that fails or goes stale is retried here or there)."""
    params = read_params(repo / "params.yaml")
    space = load_space(space_path, params, fixed)
    for key in fixed:
        if not _lookup(params, key):
            raise ParamsError(f"--set {key}: not a key of params.yaml")
    if strategy.pruner != "none" and direction != "maximize":
        raise ParamsError(f"--pruner {strategy.pruner}: pruning compares per-epoch validation "
                          "lwlrap, which needs --direction maximize (or --pruner none)")
    if strategy.grid:
        trials = grid_size(space)
    study = open_study(storage, study_name, direction, seed, heartbeat, retries,
                       strategy.sampler(space, seed), strategy.make_pruner())
    states = optuna.trial.TrialState
    done = _count(study.get_trials(deepcopy=False), states.COMPLETE, states.PRUNED)
    log.info("study %s (%s): %d trial(s) finished, running %d more%s", study_name,
             shown_url(storage), done, max(trials - done, 0),
             " (a grid: one per point)" if strategy.grid else "")
    objective = DvcObjective(repo, space, metric, study_name, fixed, push, dvc_remote, seed,
                             grid=strategy.grid, prune=strategy.pruner != "none")
    while True:
        _fail_stale(study)  # dead workers' trials: failed, re-queued
        all_trials = study.get_trials(deepcopy=False)
        if _count(all_trials, states.COMPLETE, states.PRUNED) >= trials:
            break
        failures = _count(all_trials, states.FAIL)
        if failures >= max(3, trials):
            raise RuntimeError(f"{failures} trials failed; see the log above")
        # a WAITING trial (a dead or failed trial re-queued) is taken by the next optimize
        # here or elsewhere; without one, the last trials run elsewhere and may still fail
        if not _count(all_trials, states.WAITING) and _count(
                all_trials, states.COMPLETE, states.PRUNED, states.RUNNING) >= trials:
            time.sleep(poll)
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
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.PRUNED,)):
        epoch = t.last_step or 0
        log.info("  trial %3d  pruned after epoch %d  %s", t.number, epoch, t.params)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=None,
                        help="finished (completed or pruned) trials to reach; a resumed study "
                             "counts earlier ones (default 20; a --grid runs every point)")
    parser.add_argument("--grid", action="store_true",
                        help="run every point of the space (each dimension's choices, or "
                             "low..high by step) instead of sampling: N workers share the "
                             "grid and a dead worker's point is re-run elsewhere")
    parser.add_argument("--pruner", choices=PRUNERS, default=None,
                        help="stop a trial whose per-epoch validation lwlrap falls behind "
                             "(median: below the median of earlier trials at that epoch; "
                             "hyperband); default median, none with --grid")
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
    return parser


def main() -> None:
    args = _parser().parse_args()
    if args.trials is not None and (args.trials < 1 or args.grid):
        raise ParamsError("--trials: must be at least 1" if not args.grid else
                          "--trials: a --grid runs every point of the space; drop --trials")
    # default: prune a search that maximises, not a grid (every point is asked for)
    strategy = Strategy(args.grid, args.pruner or (
        "none" if args.grid or args.direction != "maximize" else "median"))
    if args.retries < 0 or args.heartbeat < 1:
        raise ParamsError("--retries: must be >= 0; --heartbeat: must be >= 1 second")
    repo = Path(args.repo).resolve()
    storage = storage_url(args.storage, repo, args.study)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our log says what matters
    try:
        study = tune(repo, repo / args.space, Metric(args.metric), args.trials or 20,
                     args.study, storage, args.direction, _parse_set(args.set), args.seed,
                     push=args.push, dvc_remote=args.dvc_remote, retries=args.retries,
                     heartbeat=args.heartbeat, strategy=strategy)
    except RuntimeError as err:  # failed trials: the message says which and why
        log.error("error: %s", err)
        sys.exit(1)
    if not completed(study) or math.isnan(study.best_value):
        log.error("error: the search finished without a completed trial")
        sys.exit(1)


if __name__ == "__main__":
    run_stage(main)
