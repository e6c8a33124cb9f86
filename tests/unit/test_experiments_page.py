"""docs/experiments.md against what `dvc exp show` can show, without running anything: every
alternative of every ``--keep`` regex names a params.yaml key or a headline metric (a
column that moved to metrics/details/ would otherwise show nothing; the end-to-end run in
tests/e2e/test_experiments_doc.py finds it only after minutes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from experiments_page import DOC, bash_lines, keep_alternatives

from audiotag.evaluation.evaluate import HEADLINE
from audiotag.models import list_models

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
    model's headline metrics and label cleaning's."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    cols = ["Experiment", "rev", "typ", "Created", "parent", "State", "Executor"]
    cols += _flat(params)
    cols += [f"metrics/{m}.json:{k}" for m in list_models() for k in HEADLINE]
    labels = json.loads((REPO / "metrics" / "labels.json").read_text())
    cols += [f"metrics/labels.json:{k}" for k in labels]
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
    not a `metrics:` file."""
    cols = columns()
    assert not any(re.match(r"(.*:)?train\.lwlrap$", c) for c in cols)
    assert any(re.match(r"(.*:)?valid_lwlrap$", c) for c in cols)
