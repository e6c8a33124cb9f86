"""``audiotag compare``: the experiments of ``dvc exp show --json`` as one compact table.

- Rows are configurations: experiments whose params differ only in ``seed`` are one row.
- Columns: the params that differ between the experiments (``seed`` aside), ``n`` (runs
  in the row), then per model the test lwlrap — one run: its value (``metrics/<model>.json``)
  and 95 % bootstrap CI (``metrics/details/<model>.json`` at its revision); several seeds:
  mean ± sd (n) — and ``Δ`` against the reference row (the baseline commit's row unless
  ``--ref`` names an experiment).
- ``Δ`` is tested with a paired bootstrap over the test clips, from each run's per-clip
  scores ``predictions/<model>.csv`` (read from the DVC cache at the run's revision). An
  ensemble (``ensembles.<name>`` in params.yaml, ``metrics/<name>.json``) and a k-fold CV's
  fold ensemble (``<model>_cv`` of ``cv.models``) are columns like a model, their scores
  ``ensembles/<name>.csv``. Runs
  that share a test set (same clip ids and labels; with the synthetic dataset, the same
  ``seed``) are paired; within a row, runs on the same test set are averaged clip by clip,
  and the statistic is the mean over shared test sets of the lwlrap difference. ``*``
  marks p < ``--alpha`` (two-sided); the row is not tested (``n/a``) when it shares no
  test set with the reference.
- Predictions not at hand (a fresh clone before ``dvc pull``, an experiment pulled
  without its cache) do not stop the table: the metrics come from ``dvc exp show``, the
  runs whose predictions are missing are left out of the tests (``n/a`` when none is
  left), and a note under the table names them and the command that fetches them.

The clip bootstrap measures how much the test clips leave open; the spread over seeds
(sd) shows how much training noise adds. A difference is worth believing when it is
marked *and* larger than the seeds' sd.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from audiotag.contracts.names import CV_SUFFIX, DETAILS, ENSEMBLE_PREDICTIONS, PREDICTIONS
from audiotag.contracts.predictions import score_classes
from audiotag.contracts.tables import read_clip_table
from audiotag.core.headline import headline_values
from audiotag.metrics.lwlrap import clip_precisions, paired_bootstrap_blocks

SEED_KEY = "seed"


class CompareError(ValueError):
    """Bad input to ``audiotag compare`` (unreadable JSON, no experiments, bad CSV)."""


class PredictionsMissing(CompareError):
    """A run's per-clip predictions are not at hand (not in the local DVC cache nor on a
    reachable remote); ``fetch`` is the command that gets them."""

    def __init__(self, run: str, path: str, reason: str, fetch: str) -> None:
        super().__init__(f"{run}: {path} {reason} (`{fetch}` fetches it)")
        self.run, self.path, self.reason, self.fetch = run, path, reason, fetch


@dataclass
class Run:
    """One experiment (or the baseline commit) of ``dvc exp show``."""

    name: str
    rev: str | None  # git revision to read its predictions at; None = the workspace
    params: dict[str, Any]  # params.yaml, flattened (``train.lr``)
    metrics: dict[str, dict[str, Any]]  # model -> its metrics/<model>.json's numbers
    baseline: bool = False


@dataclass
class Group:
    """Runs whose params differ only in ``seed``."""

    key: tuple[Any, ...]
    runs: list[Run] = field(default_factory=list)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, list | dict) else value
    return out


def _run(record: dict[str, Any], name: str | None, baseline: bool) -> Run | None:
    data = record.get("data") or {}
    params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
    metrics = {}
    for path, entry in (data.get("metrics") or {}).items():
        parts = path.replace("\\", "/").split("/")
        name_ = parts[-1].removesuffix(".json")
        values = headline_values((entry or {}).get("data"), name_)
        if len(parts) == 2 and parts[0] == "metrics" and "lwlrap" in values:
            metrics[name_] = values
    if not metrics:  # failed, queued or running: nothing to compare
        return None
    rev = record.get("rev")
    return Run(name or str(rev)[:7], None if rev == "workspace" else rev, flatten(params),
               metrics, baseline)


def runs_from_exp_show(shown: list[dict[str, Any]]) -> list[Run]:
    """The baseline commits and their experiments (the workspace only when nothing else
    has metrics: it repeats the baseline or an applied experiment)."""
    if not isinstance(shown, list):
        raise CompareError("expected the JSON list of `dvc exp show --json`")
    runs, workspace = [], []
    for top in shown:
        if top.get("rev") == "workspace":
            workspace += [r for r in [_run(top, "workspace", True)] if r]
            continue
        base = _run(top, top.get("name") or top.get("rev", "")[:7], True)
        runs += [base] if base else []
        for exp in top.get("experiments") or []:
            state = (exp.get("executor") or {}).get("state")
            if state not in (None, "success"):  # queued, running (its metrics: the
                continue                         # workspace's), failed
            for rec in exp.get("revs") or []:
                if rec.get("error"):
                    continue
                run = _run(rec, rec.get("name") or exp.get("name"), False)
                runs += [run] if run else []
    return runs or workspace


def differing(runs: list[Run]) -> list[str]:
    """Params whose values are not the same in every run, in params.yaml order."""
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.params))
    return [k for k in keys if len({json.dumps(r.params.get(k), default=str)
                                    for r in runs}) > 1]


def group_runs(runs: list[Run]) -> tuple[list[str], list[Group]]:
    """``(differing params without seed, groups)``: one group per combination of them."""
    keys = [k for k in differing(runs) if k != SEED_KEY]
    groups: dict[tuple[Any, ...], Group] = {}
    for run in runs:
        key = tuple(run.params.get(k) for k in keys)
        groups.setdefault(key, Group(key)).runs.append(run)
    return keys, list(groups.values())


@dataclass(frozen=True)
class ClipScores:
    """One run's test clips for one model: a test-set fingerprint and per-clip precisions."""

    test_set: str
    precisions: np.ndarray
    n_labels: np.ndarray


def clip_scores(table: pd.DataFrame, where: str) -> ClipScores:
    """Per-clip lwlrap parts of a ``predictions/<model>.csv`` table (clip_id, labels, one
    column per class, then ``targets_*`` regression outputs)."""
    missing = {"clip_id", "labels"} - set(table.columns)
    if missing:
        raise CompareError(f"{where}: no column {sorted(missing)[0]!r}")
    classes = score_classes(table)
    labels = table["labels"].fillna("").astype(str)
    truth = np.array([[c in lab.split(";") for c in classes] for lab in labels], dtype=float)
    unknown = sorted({x for lab in labels for x in lab.split(";") if x} - set(classes))
    if unknown:
        raise CompareError(f"{where}: label {unknown[0]!r} is not a class column")
    scores = table[classes].to_numpy(dtype=np.float64)
    p, n = clip_precisions(truth, scores)
    digest = hashlib.sha1("\n".join(table["clip_id"].astype(str) + "\t" + labels).encode())
    return ClipScores(digest.hexdigest(), p, n)


Loader = Callable[[Run, str], pd.DataFrame]


def predictions_path(run: Run, model: str) -> str:
    """The per-clip scores behind ``metrics/<model>.json``: ``predictions/<model>.csv`` of
    a model, ``ensembles/<name>.csv`` of an ensemble (a key of the run's ``ensembles``)."""
    if any(k.startswith(f"ensembles.{model}.") for k in run.params):
        return ENSEMBLE_PREDICTIONS.format(model=model)
    if model.endswith(CV_SUFFIX) and model.removesuffix(CV_SUFFIX) in _listed(run, "cv.models"):
        return ENSEMBLE_PREDICTIONS.format(model=model)  # k-fold CV's fold ensemble
    return PREDICTIONS.format(model=model)


def _listed(run: Run, key: str) -> list[Any]:
    """A list param of the run (flattened as JSON text), [] when absent."""
    value = run.params.get(key)
    return json.loads(value) if isinstance(value, str) else list(value or [])


NOT_CACHED = "not in the local DVC cache"
NO_COMMIT = "at a commit this clone lacks"


def fetch_command(run: Run) -> str:
    """The command that brings ``run``'s outputs into the local cache: ``dvc pull`` for the
    workspace and the baseline commit, ``dvc exp pull`` (git refs + cache) for an experiment."""
    if run.baseline or run.rev is None:
        return "dvc pull"
    return f"dvc exp pull origin {run.name}"


def dvc_loader(repo: str | Path) -> Loader:
    """Reads a run's :func:`predictions_path` through ``dvc.api.open`` (the DVC cache at
    the run's revision, else the default remote); :class:`PredictionsMissing` when neither
    has it (or the run's commit is not in this clone)."""
    def load(run: Run, model: str) -> pd.DataFrame:
        import dvc.api
        from dvc.exceptions import FileMissingError, PathMissingError
        from dvc.scm import RevError

        path = predictions_path(run, model)
        try:
            with dvc.api.open(path, repo=str(repo), rev=run.rev) as handle:
                text = handle.read()
        except (PathMissingError, FileMissingError):  # what dvc raises for an empty cache
            raise PredictionsMissing(run.name, path, NOT_CACHED, fetch_command(run)) from None
        except RevError:  # an experiment of a saved --json that this clone lacks
            raise PredictionsMissing(run.name, path, NO_COMMIT, fetch_command(run)) from None
        except Exception as err:  # not a DVC repo, an unreadable remote, ...
            raise CompareError(f"{run.name}: cannot read {path} ({type(err).__name__}: "
                               f"{err})") from None
        return read_clip_table(io.StringIO(text))
    return load


CI_KEYS = ("lwlrap_ci_low", "lwlrap_ci_high")


def add_intervals(runs: list[Run], repo: str | Path) -> None:
    """Each run's test lwlrap 95 % CI (not a headline number: ``dvc exp show`` stays
    narrow) from its details file, read from git at the run's revision (the workspace's
    from disk); a run or model without one keeps its value alone."""
    for run in runs:
        for model, values in run.metrics.items():
            path = DETAILS.format(model=model)
            if run.rev is None:
                file = Path(repo) / path
                text = file.read_text() if file.exists() else None
            else:
                shown = subprocess.run(["git", "show", f"{run.rev}:{path}"], cwd=repo,
                                       capture_output=True, text=True, check=False)
                text = shown.stdout if shown.returncode == 0 else None
            try:
                details = json.loads(text) if text else {}
            except json.JSONDecodeError:
                details = {}
            values.update({k: details[k] for k in CI_KEYS if details.get(k) is not None})


def _fmt_value(group: Group, model: str) -> tuple[str, list[float]]:
    values = [r.metrics[model]["lwlrap"] for r in group.runs
              if model in r.metrics and r.metrics[model].get("lwlrap") is not None]
    if not values:
        return "–", []
    if len(values) == 1:
        m = next(r.metrics[model] for r in group.runs if model in r.metrics)
        low, high = m.get("lwlrap_ci_low"), m.get("lwlrap_ci_high")
        ci = f" [{low:.3f}, {high:.3f}]" if None not in (low, high) else ""
        return f"{values[0]:.3f}{ci}", values
    sd = float(np.std(values, ddof=1))
    return f"{np.mean(values):.3f} ± {sd:.3f} ({len(values)})", values


class Comparer:
    """Per-clip scores (cached per run and model) and the paired tests between groups;
    ``missing`` collects the predictions that were not at hand."""

    def __init__(self, loader: Loader, resamples: int, seed: int, alpha: float) -> None:
        self.loader, self.resamples, self.seed, self.alpha = loader, resamples, seed, alpha
        self._cache: dict[tuple[str, str], ClipScores | None] = {}
        self.missing: list[PredictionsMissing] = []

    def scores(self, run: Run, model: str) -> ClipScores | None:
        """The run's clip scores for ``model``; None when its predictions are not at hand."""
        key = (run.name, model)
        if key not in self._cache:
            where = f"{run.name}: {predictions_path(run, model)}"
            try:
                self._cache[key] = clip_scores(self.loader(run, model), where)
            except PredictionsMissing as missing:
                self._cache[key] = None
                self.missing.append(missing)
        return self._cache[key]

    def _by_test_set(self, group: Group, model: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        sets: dict[str, list[ClipScores]] = {}
        for run in group.runs:
            s = self.scores(run, model) if model in run.metrics else None
            if s is not None:
                sets.setdefault(s.test_set, []).append(s)
        return {k: (np.mean([s.precisions for s in v], axis=0), v[0].n_labels)
                for k, v in sets.items()}

    def delta(self, group: Group, ref: Group, model: str) -> str:
        a, b = self._by_test_set(group, model), self._by_test_set(ref, model)
        shared = [k for k in a if k in b]
        if not shared:
            return "n/a"
        diff, _, _, p = paired_bootstrap_blocks([(a[k][0], b[k][0], a[k][1]) for k in shared],
                                                self.resamples, self.seed)
        return f"{diff:+.3f}{'*' if p < self.alpha else ''}"


def _param_text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass
class Comparison:
    """The table (``header``, ``rows``) and the predictions that were not at hand."""

    header: list[str]
    rows: list[list[str]]
    missing: list[PredictionsMissing] = field(default_factory=list)

    def notes(self) -> str:
        """One line per run whose predictions were missing: which, and how to fetch them."""
        by_run: dict[str, list[PredictionsMissing]] = {}
        for m in self.missing:
            by_run.setdefault(m.run, []).append(m)
        lines = [f"{run}: {', '.join(m.path for m in ms)} {ms[0].reason}; "
                 f"`{ms[0].fetch}` fetches them" for run, ms in by_run.items()]
        if not lines:
            return ""
        return "\n".join(["Predictions not at hand (their runs are left out of Δ; the "
                          "metrics above are complete):", *(f"  {x}" for x in lines)])


def compare_table(runs: list[Run], loader: Loader, ref: str | None = None,
                  resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> Comparison:
    """The comparison (see the module doc)."""
    if not runs:
        raise CompareError("no experiment with metrics in `dvc exp show`: run or queue some "
                           "(docs/experiments.md)")
    keys, groups = group_runs(runs)
    models = list(dict.fromkeys(m for r in runs for m in r.metrics))
    if ref is not None:
        matches = [g for g in groups if any(r.name == ref for r in g.runs)]
        if not matches:
            raise CompareError(f"--ref {ref!r}: no experiment of that name; names: "
                               f"{', '.join(r.name for r in runs)}")
        reference = matches[0]
    else:
        reference = next((g for g in groups if any(r.baseline for r in g.runs)), groups[0])
    comparer = Comparer(loader, resamples, seed, alpha)
    header = ["experiments", *keys, "n"]
    for m in models:
        header += [f"{m} test lwlrap", f"{m} Δ"]
    rows = []
    for group in groups:
        names = [r.name for r in group.runs]
        label = names[0] if len(names) == 1 else f"{names[0]}+{len(names) - 1}"
        row = [label, *(_param_text(v) for v in group.key), str(len(group.runs))]
        for m in models:
            text, values = _fmt_value(group, m)
            if group is reference:
                delta = "ref"
            elif not values:
                delta = "–"
            else:
                delta = comparer.delta(group, reference, m)
            row += [text, delta]
        rows.append(row)
    return Comparison(header, rows, comparer.missing)


def render(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in [header, *rows])


LEGEND = ("test lwlrap: one run: value [95 % bootstrap CI over the test clips]; several "
          "seeds: mean ± sd (n). Δ: difference of the mean to the reference row (ref), from "
          "a paired bootstrap over the test clips; * p < {alpha} (two-sided); n/a: no test "
          "set shared with the reference, or its predictions not at hand.")


def exp_show(repo: str | Path) -> list[dict[str, Any]]:
    """``dvc exp show --json`` of ``repo`` (this interpreter's DVC)."""
    result = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=repo,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise CompareError(f"dvc exp show failed in {repo}: {result.stderr.strip()[-500:]}")
    return parse_json(result.stdout, "dvc exp show --json")


def parse_json(text: str, where: str) -> list[dict[str, Any]]:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise CompareError(f"{where}: not JSON ({err})") from None


def run_compare(repo: str | Path = ".", exp_json: str | None = None, markdown: bool = False,
                ref: str | None = None, resamples: int = 1000, seed: int = 0,
                alpha: float = 0.05) -> str:
    """The table as text (see the module doc); ``exp_json``: a saved ``dvc exp show
    --json`` instead of running it."""
    if not 0 < alpha < 1 or resamples < 100:
        raise CompareError("--alpha must be in (0, 1) and --resamples at least 100")
    shown = (parse_json(Path(exp_json).read_text(), exp_json) if exp_json
             else exp_show(repo))
    runs = runs_from_exp_show(shown)
    add_intervals(runs, repo)
    table = compare_table(runs, dvc_loader(repo), ref, resamples, seed, alpha)
    parts = [render(table.header, table.rows, markdown), LEGEND.format(alpha=f"{alpha:g}"),
             table.notes()]
    return "\n\n".join(p for p in parts if p)
