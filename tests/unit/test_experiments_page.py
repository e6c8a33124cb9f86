"""docs/experiments.md checked line by line without running anything (`make test` runs only a
few of its sections, tests/e2e/test_experiments_doc.py; `make test-docs` runs them all):

- every ``-S`` value of every sweep passes params.yaml's schema (the check_params stage's
  check) and every key is a params dependency of a stage, so DVC re-runs what it changes;
- every alternative of every ``--keep`` regex names a params.yaml key or a headline metric
  (a column that moved to metrics/details/ would otherwise show nothing);
- every ``dvc plots diff --targets`` file is declared in dvc.yaml, and every experiment a
  comparison names is queued earlier on the page.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from experiments_page import DOC, bash_lines, keep_alternatives, parse_value, split_top_level

from audiotag.core.errors import ParamsError
from audiotag.core.headline import CV_KEYS, ENSEMBLE_KEYS, KEYS
from audiotag.core.params import set_dotted
from audiotag.models import list_models
from audiotag.params_check import check_params

REPO = Path(__file__).resolve().parents[2]


def _flat(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys += _flat(value, f"{prefix}{key}.")
    return keys


def columns() -> list[str]:
    """The columns `dvc exp show --csv` can have: fixed ones, every params.yaml key, every
    model's, ensemble's and cross-validated model's headline metrics (under its name)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cols = ["Experiment", "rev", "typ", "Created", "parent", "State", "Executor"]
    cols += _flat(params)
    cols += [f"{m}.{k}" for m in list_models() for k in KEYS]
    cols += [f"{m}_cv.{k}" for m in list_models() for k in CV_KEYS]
    cols += [f"{e}.{k}" for e in params["ensembles"] for k in ENSEMBLE_KEYS]
    return cols


def keep_lines() -> list[str]:
    return [ln for ln in bash_lines(DOC.read_text())
            if ln.startswith("dvc exp show") and "--keep" in ln]


def test_the_page_has_keep_lines():
    assert len(keep_lines()) >= 4


def test_every_keep_alternative_names_a_column():
    cols = columns()
    for line in keep_lines():
        for alt in keep_alternatives(line):
            assert any(re.match(alt, col) for col in cols), \
                f"docs/experiments.md: --keep {alt!r} matches no params key or headline " \
                f"metric (details are in metrics/details/, not in dvc exp show)\n{line}"


def test_a_moved_metric_is_caught():
    """The check fails on what broke the page once: train.lwlrap is dvclive's summary,
    not a `metrics:` file; train_seconds is in metrics/timings/, not a `metrics:` file."""
    cols = columns()
    assert not any(re.match(r".*\.train\.lwlrap$", c) for c in cols)
    assert not any(re.match(r".*train_seconds$", c) for c in cols)  # a timing: not a result
    assert any(re.match(r".*\.valid_lwlrap$", c) for c in cols)


def exp_runs() -> list[tuple[str, str | None, list[tuple[str, str]], bool]]:
    """``(line, name, [(key, value)], queued)`` of every `dvc exp run` line."""
    out = []
    for line in bash_lines(DOC.read_text()):
        if not line.startswith("dvc exp run"):
            continue
        tokens = shlex.split(line)
        # ``++key``: set, or add a model's own copy of a models.defaults option
        sets = [tuple(tokens[i + 1].lstrip("+").split("=", 1)) for i, tok in enumerate(tokens)
                if tok in ("-S", "--set-param")]
        name = next((tokens[i + 1] for i, tok in enumerate(tokens) if tok in ("-n", "--name")),
                    None)
        out.append((line, name, sets, "--queue" in tokens))
    return out


def grid(sets: list[tuple[str, str]], queued: bool) -> list[dict]:
    points: list[dict] = [{}]
    for key, value in sets:
        values = split_top_level(value) if queued else [value]
        points = [{**p, key: parse_value(v)} for p in points for v in values]
    return points


def test_every_sweep_value_passes_the_params_schema(tmp_path, monkeypatch):
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    monkeypatch.chdir(REPO)  # data.inputs are checked against the DVC-tracked files here
    checked = 0
    for line, _, sets, queued in exp_runs():
        for point in grid(sets, queued):
            params = yaml.safe_load(yaml.safe_dump(base))
            for key, value in point.items():
                set_dotted(params, key, value)
            path = tmp_path / "params.yaml"
            path.write_text(yaml.safe_dump(params, sort_keys=False))
            try:
                check_params(path)
            except ParamsError as err:
                pytest.fail(f"docs/experiments.md: {point} fails params.yaml's schema:\n{err}"
                            f"\n{line}")
            checked += 1
    assert checked >= 40  # every experiment of every sweep


def test_a_bad_sweep_value_fails_the_schema(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    set_dotted(params, "features.pad_mode", "wrapp")
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match="pad_mode"):
        check_params(path)


def _stage_params() -> list[str]:
    """Every params dependency of dvc.yaml as a regex (``${item}``: any model)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    deps = []
    for stage in stages.values():
        body = stage.get("do", stage)
        for entry in body.get("params", []):
            keys = entry if isinstance(entry, str) else next(iter(entry.values()))
            for key in [keys] if isinstance(keys, str) else keys:
                deps.append(re.escape(key).replace(re.escape("${item}"), r"[^.]+"))
    return deps


def _stage_lists() -> set[str]:
    """The params dvc.yaml's ``foreach``/``matrix`` stages iterate over (``train.models``,
    ``report.regression_plots``, ...): a key that adds or removes stages."""
    text = (REPO / "dvc.yaml").read_text()
    return set(re.findall(r"(?:foreach:|model:|fold:)\s*\$\{([\w.]+)\}", text))


def test_every_swept_key_is_a_stage_dependency():
    """A key no stage lists would queue an experiment that re-runs nothing.
    (``train.models`` is dvc.yaml's ``foreach`` list: it adds or removes stages.)"""
    deps = _stage_params()
    lists = _stage_lists()
    assert {"train.models", "report.regression_plots"} <= lists
    for line, _, sets, _ in exp_runs():
        for key, _ in sets:
            if key in lists:
                continue
            assert any(re.fullmatch(dep, key) or re.match(dep + r"\.", key) for dep in deps), \
                f"docs/experiments.md: no stage of dvc.yaml depends on {key}\n{line}"


def _declared_paths() -> list[str]:
    """dvc.yaml's outs, metrics and plots (``${item}``: any model), as regexes."""
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    paths = []

    def add(entries):
        for entry in entries or []:
            path = entry if isinstance(entry, str) else next(iter(entry))
            paths.append(re.escape(path).replace(re.escape("${item}"), r"[^/]+"))

    for stage in spec["stages"].values():
        body = stage.get("do", stage)
        for field in ("outs", "metrics", "plots"):
            add(body.get(field))
    add(spec.get("plots"))
    return paths


def test_every_plot_target_and_experiment_name_exists():
    declared = _declared_paths()
    names = {"main", "HEAD", "workspace"}
    for line in bash_lines(DOC.read_text()):
        if line.startswith("dvc exp run"):
            _, name, sets, queued = next(r for r in exp_runs() if r[0] == line)
            points = grid(sets, queued)
            names |= {name} if len(points) == 1 else {f"{name}-{i}"
                                                      for i in range(1, len(points) + 1)}
        if not line.startswith("dvc plots diff"):
            continue
        tokens = shlex.split(line)
        targets = tokens.index("--targets")
        for rev in tokens[3:targets]:
            assert rev in names, f"docs/experiments.md: {rev} is not queued before\n{line}"
        for target in tokens[targets + 1:]:
            if target.startswith("-"):
                break
            assert any(re.fullmatch(p, target) or re.match(p + "/", target)
                       for p in declared), \
                f"docs/experiments.md: {target} is not an output of dvc.yaml\n{line}"
