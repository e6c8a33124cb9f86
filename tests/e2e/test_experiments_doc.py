"""docs/experiments.md runs: every line of its ```bash blocks (the `dvc exp run` commands
and the shell lines between them: queue starts, comparisons, the transfer-learning
copies) runs in order in one tiny project with the real `dvc` CLI, and afterwards
`dvc exp show` holds every experiment the page queues, with metrics and with the params
it sets. ```text blocks hold placeholders and are not run.

What the test changes so that each run takes seconds, and why (`tiny_command`):

- the project: tests/dvc_project.TINY (a few short clips at 8 kHz, small features) plus
  ``BASE`` below: one epoch, baseline models cnn2d and cnn1d (the two the page's sections
  train), feature extraction in the stage process, no label cleaning (it only runs in
  the baseline and the pretraining; its own tests are in test_cleaning.py);
- ``train.models`` lists keep only ``SMALL`` models (the model comparison names every
  model; each name is checked against the model registry instead of trained: one tiny
  training costs about as much per model as the whole sweep of another section);
- ``train.swa_start_epoch`` becomes 1: SWA must start at an epoch <= train.epochs (1 here);
- ``train.epochs`` (where the page sets it) becomes 1;
- ``data.dataset=esc50`` (the transfer-learning source) becomes the synthetic dataset with
  8 classes instead of 6 (no downloads in tests; a different class count keeps the part
  that matters: every layer but the classifier head is loaded);
- ``dvc queue start -j 1`` runs with ``-j 2`` (both cores) and the test then waits until
  the queue is empty, as a reader waits for `dvc queue status` to show it done;
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
from experiments_page import DOC, bash_lines, keep_alternatives, sections

pytestmark = pytest.mark.e2e
RUN_FIRST = True  # the longest test of the suite (tests/conftest.py starts it first)


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
]

BASE = {"train": {"models": ["cnn2d", "cnn1d"], "epochs": 1},
        "features": {"workers": 0},
        "clean": {"method": "none"}}
SMALL = ("cnn2d", "cnn1d", "crnn")
# key -> value forced in every tiny run where the page sets the key (see the docstring)
FORCED = {"train.swa_start_epoch": 1, "train.epochs": 1}
DATASET_SWAP = {"esc50": ["data.dataset=synthetic", "data.synthetic.num_classes=8"]}
QUEUE_JOBS = "2"
QUEUE_DEADLINE_S = 3600


def split_top_level(value: str) -> list[str]:
    """``a,b`` -> [a, b] but ``[1,2],[3,4]`` -> [[1,2], [3,4]] (Hydra's sweep syntax)."""
    out, depth, cur = [], 0, ""
    for ch in value:
        depth += 1 if ch in "[(" else -1 if ch in "])" else 0
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [*out, cur]


def parse_value(text: str):
    """A ``-S`` value as Hydra (hence DVC) types it."""
    from dvc.utils.hydra import to_hydra_overrides

    return to_hydra_overrides([f"k={text}"])[0].value()


class ExpRun:
    """One `dvc exp run` line: its name, its ``-S key=values`` and the tiny version."""

    def __init__(self, line: str):
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
        assert self.name, f"every experiment on the page is named (-n): {line}"

    def tiny_sets(self) -> list[tuple[str, str]]:
        sets = []
        for key, value in self.sets:
            if key == "train.models":
                names = parse_value(value)
                value = "[" + ",".join(n for n in names if n in SMALL) + "]"
            elif key in FORCED:
                value = str(FORCED[key])
            elif key == "data.dataset" and value in DATASET_SWAP:
                sets += [tuple(kv.split("=", 1)) for kv in DATASET_SWAP[value]]
                continue
            sets.append((key, value))
        return sets

    def tiny_command(self) -> str:
        args = [a for key, value in self.tiny_sets() for a in ("-S", f"{key}={value}")]
        return shlex.join([*self.tokens[:3], *self.options, *args])

    def expected(self) -> dict[str, dict]:
        """Experiment name -> params it must show (a sweep expands to <name>-1, -2, ...)."""
        grid: list[dict] = [{}]
        for key, value in self.tiny_sets():
            values = split_top_level(value) if "--queue" in self.options else [value]
            # ``++key``: set, or add a model's own copy of a models.defaults option
            grid = [{**g, key.lstrip("+"): parse_value(v)} for g in grid for v in values]
        if len(grid) == 1:
            return {self.name: grid[0]}
        return {f"{self.name}-{i}": g for i, g in enumerate(grid, 1)}


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


def test_every_command_of_the_page_runs(repo_root, tmp_path):
    started = time.monotonic()
    project = make_project(repo_root, tmp_path / "project", BASE)
    expected: dict[str, dict] = {}
    timings = []
    try:
        for line in bash_lines(DOC.read_text()):
            t0 = time.monotonic()
            if line.startswith("dvc exp run"):
                exp = ExpRun(line)
                for name, params in exp.expected().items():
                    assert name not in expected, f"experiment name {name} used twice"
                    expected[name] = params
                line = exp.tiny_command()
            elif line.startswith("dvc queue start"):
                line = re.sub(r"-j \d+", f"-j {QUEUE_JOBS}", line)
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
            lwlrap = data["metrics"][f"metrics/{model}.json"]["data"]["lwlrap"]
            assert 0.0 < lwlrap <= 1.0, f"{name}: {model} lwlrap {lwlrap}"
