"""docs/experiments.md runs: the lines of its ```bash blocks (the `dvc exp run` commands
and the shell lines between them: queue starts, comparisons, the transfer-learning
copies) run in order in one tiny project with the real `dvc` CLI, and afterwards
`dvc exp show` holds every experiment they queue, with metrics and with the params they
set. ```text blocks hold placeholders and are not run.

Two sizes: `make test` runs :data:`CI_SECTIONS`, each queued sweep at its first value
(``test_representative_sections_run``, a few minutes); `make test-docs` runs every line and
every sweep value (``test_every_command_of_the_page_runs``, marked ``docs``, about half an
hour of both cores). tests/unit/test_experiments_page.py checks every line of the page
without running it.

What the test changes so that each run takes seconds, and why (`tiny_command`):

- the project: tests/dvc_project.TINY (a few short clips at 8 kHz, small features) plus
  ``BASE`` below: one epoch, baseline models cnn2d and cnn1d (the two the page's sections
  train), feature extraction in the stage process, no label cleaning (it only runs in
  the baseline and the pretraining; its own tests are in test_cleaning.py);
- ``train.models`` lists keep only ``SMALL`` models, unless none is (the model comparison
  names every model; each name is checked against the model registry instead of trained:
  one tiny training costs about as much per model as the whole sweep of another section; a
  section about one large model trains it);
- ``train.swa_start_epoch`` becomes 1: SWA must start at an epoch <= train.epochs (1 here);
- ``train.epochs`` (where the page sets it) becomes 1;
- ``data.dataset=esc50`` (the transfer-learning source) becomes the synthetic dataset with
  8 classes instead of 6 (no downloads in tests; a different class count keeps the part
  that matters: every layer but the classifier head is loaded);
- ``dvc queue start -j 1`` runs with ``-j 2`` (both cores) in the full run, and the test
  then waits until the queue is empty, as a reader waits for `dvc queue status` to show it
  done;
- ``dvc exp show ... --keep <regex>`` prints ``--csv``, so that the test can check that
  every alternative of the regex keeps a column (a misspelt column name would silently
  show nothing).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from dvc_project import env_for, experiments, make_project, run
from experiments_page import (
    DOC,
    bash_lines,
    keep_alternatives,
    parse_value,
    sections,
    split_top_level,
)

pytestmark = pytest.mark.e2e
RUN_FIRST = True  # the longest test of `make test` (tests/conftest.py starts it first)


# the experiments the issue asks the page to cover: one `## ` section each
SECTIONS = [
    "Clip length",
    "Padding modes",
    "Mel vs MFCC vs both",
    "Dropout on/off",
    "Head depth 2 vs 3",
    "Batch size × learning rate",
    "Weight decay",
    "Mixup, cyclic learning rate and SWA",
    "MinMax vs standard normalization",
    "CNN1D: 3 vs 4 blocks",
    "Model comparison",
    "Transfer learning",
    "Multitask: classes and regression targets",
    "The Greek notebook's LSTM grid: mel, beat-synchronous, chroma, mel + chroma",
    "Normalising stacked front ends",
    "PCA on the inputs",
    "Crop, then mirror",
    "GCNN: sigmoid in the recurrent layer",  # issue 34
    "EVA-02 beside Swin V2",
]

BASE = {"train": {"models": ["cnn2d", "cnn1d"], "epochs": 1},
        "features": {"workers": 0},
        "clean": {"method": "none"}}
SMALL = ("cnn2d", "cnn1d", "crnn", "lstm")
# key -> value forced in every tiny run where the page sets the key (see the docstring)
FORCED = {"train.swa_start_epoch": 1, "train.epochs": 1}
DATASET_SWAP = {"esc50": ["data.dataset=synthetic", "data.synthetic.num_classes=8"]}
QUEUE_JOBS = "2"
# what `make test` runs of the page (test_representative_sections_run): the baseline run,
# a queued sweep, `dvc exp show` and `audiotag compare`, training cnn2d only (the model
# that section's sweep names); every other section's lines run in `make test-docs`
CI_SECTIONS = ["How the experiments are run"]
CI_BASE = {"train": {"models": ["cnn2d"]}}
QUEUE_DEADLINE_S = 3600


class ExpRun:
    """One `dvc exp run` line: its name, its ``-S key=values`` and the tiny version.

    ``trim``: a queued sweep runs its first value only (every value is still checked by
    tests/unit/test_experiments_page.py); a trimmed sweep keeps the name of its first
    experiment (``<name>-1``) and the experiments it no longer queues are :meth:`dropped`.
    """

    def __init__(self, line: str, trim: bool = False):
        self.tokens = shlex.split(line, comments=True)
        assert self.tokens[:3] == ["dvc", "exp", "run"], line
        self.name = None
        self.sets: list[tuple[str, str]] = []
        rest, i = [], 3
        while i < len(self.tokens):
            tok = self.tokens[i]
            if tok in ("-S", "--set-param"):
                key, _, value = self.tokens[i + 1].partition("=")
                self.sets.append((key, value))
                i += 2
                continue
            if tok in ("-n", "--name"):
                self.name = self.tokens[i + 1]
            rest.append(tok)
            i += 1
        self.options = rest
        self.queued = "--queue" in rest
        self.trim = trim and self.queued
        assert self.name, f"every experiment on the page is named (-n): {line}"

    def tiny_sets(self, trim: bool | None = None) -> list[tuple[str, str]]:
        trim = self.trim if trim is None else trim
        sets = []
        for key, value in self.sets:
            if key == "train.models":
                names = parse_value(value)
                # a list of large models only (a section about one backbone) trains them
                value = "[" + ",".join([n for n in names if n in SMALL] or names) + "]"
            elif key in FORCED:
                value = str(FORCED[key])
            elif key == "data.dataset" and value in DATASET_SWAP:
                sets += [tuple(kv.split("=", 1)) for kv in DATASET_SWAP[value]]
                continue
            elif trim:
                value = split_top_level(value)[0]
            sets.append((key, value))
        return sets

    def _grid(self, trim: bool) -> list[dict]:
        grid: list[dict] = [{}]
        for key, value in self.tiny_sets(trim):
            values = split_top_level(value) if self.queued else [value]
            # ``++key``: set, or add a model's own copy of a models.defaults option
            grid = [{**g, key.lstrip("+"): parse_value(v)} for g in grid for v in values]
        return grid

    def _names(self, trim: bool) -> list[str]:
        if len(self._grid(trim=False)) == 1:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(1, len(self._grid(trim)) + 1)]

    def tiny_command(self) -> str:
        args = [a for key, value in self.tiny_sets() for a in ("-S", f"{key}={value}")]
        options = list(self.options)
        if self.trim and len(self._grid(trim=True)) == 1:  # the sweep's first experiment
            options[options.index(self.name)] = self._names(trim=True)[0]
        return shlex.join([*self.tokens[:3], *options, *args])

    def expected(self) -> dict[str, dict]:
        """Experiment name -> params it must show (a sweep expands to <name>-1, -2, ...)."""
        return dict(zip(self._names(self.trim), self._grid(self.trim), strict=True))

    def dropped(self) -> set[str]:
        """The page's experiment names that the trimmed sweep does not queue."""
        return set(self._names(trim=False)) - set(self._names(self.trim))


def _bash(line: str, cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=cwd, env=env_for(cwd),
                          capture_output=True, text=True, timeout=timeout)


def _wait_for_queue(project: Path) -> str:
    deadline = time.monotonic() + QUEUE_DEADLINE_S
    while True:
        status = run(["dvc", "queue", "status"], project).stdout
        if ("Queued" not in status and "Running" not in status) or \
                time.monotonic() > deadline:
            return status
        time.sleep(3)


def _param(params: dict, dotted: str):
    node = params
    for part in dotted.split("."):
        node = node[part]
    return node


def test_the_page_covers_every_experiment_of_the_issue():
    text = DOC.read_text()
    found = sections(text)
    missing = [s for s in SECTIONS if s not in found]
    assert not missing, f"docs/experiments.md lacks the sections {missing}"
    for title in SECTIONS:
        body = found[title]
        assert "*Question:*" in body, f"{title}: no question"
        assert re.search(r"^dvc exp run .*-S ", body, flags=re.M), f"{title}: no command"
        assert re.search(r"^dvc (exp show|plots diff)", body, flags=re.M), \
            f"{title}: no comparison"


def test_every_model_the_page_names_exists():
    from audiotag.models import list_models

    known = set(list_models())
    for line in bash_lines(DOC.read_text()):
        if line.startswith("dvc exp run"):
            for key, value in ExpRun(line).sets:
                if key == "train.models":
                    assert set(parse_value(value)) <= known, line


def run_page(lines: list[str], project: Path, trim: bool, queue_jobs: str | None) -> None:
    """Run ``lines`` in order in ``project`` as the page's reader would (see the module
    docstring for what the tiny project changes), then check `dvc exp show`."""
    started = time.monotonic()
    expected: dict[str, dict] = {}
    dropped: set[str] = set()
    timings = []
    try:
        for line in lines:
            t0 = time.monotonic()
            if line.startswith("dvc exp run"):
                exp = ExpRun(line, trim=trim)
                for name, params in exp.expected().items():
                    assert name not in expected, f"experiment name {name} used twice"
                    expected[name] = params
                dropped |= exp.dropped()
                line = exp.tiny_command()
            else:  # a comparison names only the experiments that ran
                line = shlex.join(tok for tok in shlex.split(line) if tok not in dropped)
            if line.startswith("dvc queue start") and queue_jobs:
                line = re.sub(r"-j \d+", f"-j {queue_jobs}", line)
            elif line.startswith("dvc exp show") and "--keep" in line:
                line += " --csv"
            result = _bash(line, project)
            assert result.returncode == 0, \
                f"{line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            if line.startswith("dvc exp show") and "--keep" in line:
                header = next(csv.reader(io.StringIO(result.stdout)))
                for alt in keep_alternatives(line):
                    assert any(re.match(alt, col) for col in header), \
                        f"--keep {alt!r} keeps no column of {header}"
            if line.startswith("dvc queue start"):
                status = _wait_for_queue(project)
                failed = [row.split()[1] for row in status.splitlines() if "Failed" in row]
                logs = "".join(_bash(f"dvc queue logs {n}", project).stdout[-3000:]
                               for n in failed)
                assert "Failed" not in status and "Queued" not in status, \
                    f"{status}\n{logs}"
            timings.append((round(time.monotonic() - t0), line))
            print(f"{timings[-1][0]:5d} s  {line}", flush=True)  # live with -s
    finally:
        _bash("dvc queue stop", project, timeout=120)
        print(f"\n{round(time.monotonic() - started)} s in all; per line:")
        print("\n".join(f"{s:5d} s  {line}" for s, line in timings))

    shown = json.loads(run(["dvc", "exp", "show", "--json", "--all-commits"],
                           project).stdout)
    runs = {r["name"]: r for r in experiments(shown) if r.get("name")}
    assert set(runs) == set(expected), \
        f"missing {set(expected) - set(runs)}, unexpected {set(runs) - set(expected)}"
    for name, params in expected.items():
        data = runs[name]["data"]
        values = data["params"]["params.yaml"]["data"]
        for key, value in params.items():
            assert _param(values, key) == value, f"{name}: {key}"
        models = _param(values, "train.models")
        for model in models:
            lwlrap = data["metrics"][f"metrics/{model}.json"]["data"][model]["lwlrap"]
            assert 0.0 < lwlrap <= 1.0, f"{name}: {model} lwlrap {lwlrap}"


def test_representative_sections_run(repo_root, tmp_path):
    """`make test`'s share of the page: the sections of :data:`CI_SECTIONS` in order, each
    queued sweep at its first value (all values are checked without training by
    tests/unit/test_experiments_page.py; `make test-docs` runs every line)."""
    found = sections(DOC.read_text())
    missing = [s for s in CI_SECTIONS if s not in found]
    assert not missing, f"docs/experiments.md lacks the sections {missing}"
    lines = [ln for title in CI_SECTIONS for ln in bash_lines(found[title])]
    project = make_project(repo_root, tmp_path / "project", BASE, CI_BASE)
    run_page(lines, project, trim=True, queue_jobs=None)


@pytest.mark.docs
def test_every_command_of_the_page_runs(repo_root, tmp_path):
    """Every line of the page, every sweep value (about half an hour of both cores:
    `make test-docs`, not `make test`)."""
    project = make_project(repo_root, tmp_path / "project", BASE)
    run_page(bash_lines(DOC.read_text()), project, trim=False, queue_jobs=QUEUE_JOBS)
