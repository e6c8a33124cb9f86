"""Ensembles across models (issue 20 item 2) through the real `dvc` CLI: the default
`ensemble@ensemble` runs in `dvc repro`, its metrics are a column of `dvc exp show` and
of `audiotag compare`, and changing its method re-runs only it and the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dvc_project import commit, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(project_copy) -> Path:
    return project_copy("ensemble")


def test_repro_runs_the_ensemble_and_exp_show_has_its_metrics(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["ensembles"]["ensemble"]["models"] is None  # the default: train.models
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert "ensemble@ensemble" in lock
    details = json.loads((project / "metrics/details/ensemble.json").read_text())
    assert details["members"] == params["train"]["models"] == ["cnn1d", "crnn"]
    head = json.loads((project / "metrics/ensemble.json").read_text())["ensemble"]
    assert head["lwlrap"] == details["lwlrap"]  # the headline: test lwlrap, the CI in details
    assert details["lwlrap_ci_low"] <= details["lwlrap"] <= details["lwlrap_ci_high"]
    scores = pd.read_csv(project / "ensembles/ensemble.csv", dtype={"clip_id": str})
    member = pd.read_csv(project / "predictions/cnn1d.csv", dtype={"clip_id": str})
    assert scores["clip_id"].tolist() == member["clip_id"].tolist()
    assert "| ensemble |" in (project / "reports/summary.md").read_text()

    commit(project, "baseline")
    out = run(["dvc", "exp", "run", "-S", "ensembles.ensemble.method=rank"], project).stdout
    assert "Running stage 'ensemble@ensemble'" in out and "Running stage 'report'" in out
    assert "Running stage 'train@" not in out and "Running stage 'evaluate@" not in out
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    runs = [r for rev in shown for e in (rev.get("experiments") or []) for r in e["revs"]]
    (exp,) = [r for r in runs if r["data"]["params"]["params.yaml"]["data"]["ensembles"]
              ["ensemble"]["method"] == "rank"]
    ranked = exp["data"]["metrics"]["metrics/ensemble.json"]["data"]["ensemble"]
    assert 0.0 < ranked["lwlrap"] <= 1.0

    table = run([sys.executable, "-m", "audiotag", "compare"], project).stdout
    header = table.splitlines()[0]
    assert "ensemble test lwlrap" in header and "ensemble Δ" in header
    rank_row = next(line for line in table.splitlines() if line.startswith(exp["name"]))
    assert "n/a" not in rank_row  # paired on the ensemble's own per-clip scores
