"""k-fold cross-validation (issue 20, training tools item 1) through the real `dvc` CLI on
the shared tiny project: the default repro has no cv stage; `dvc exp run -S cv.models=...`
trains the listed folds of that model only, and adding a fold trains only that fold; the
fold ensemble is a row of the report and a column of `audiotag compare`."""

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
    return project_copy("cv")


def _ran(out: str) -> set[str]:
    return {line.split("'")[1] for line in out.splitlines()
            if line.startswith("Running stage '")}


def test_adding_a_fold_trains_only_that_fold(project):
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert not [name for name in lock if name.startswith("cv")]  # default: no cv stage
    commit(project, "baseline")

    two = ["-S", "cv.models=[cnn1d]", "-S", "cv.k=3"]
    out = run(["dvc", "exp", "run", *two, "-S", "cv.folds=[0,1]"], project).stdout
    assert _ran(out) == {"check_params", "cv_fold@cnn1d-0", "cv_fold@cnn1d-1", "cv@cnn1d",
                         "report"}, out
    head = json.loads((project / "metrics/cnn1d_cv.json").read_text())["cnn1d_cv"]
    assert list(head) == ["cv_lwlrap_mean", "cv_lwlrap_sd", "lwlrap"]  # the headline
    assert 0 < head["lwlrap"] <= 1 and head["cv_lwlrap_sd"] is not None
    details = json.loads((project / "metrics/details/cnn1d_cv.json").read_text())
    assert details["cv_folds"] == 2 and 0 < details["oof_lwlrap"] <= 1
    assert "| cnn1d_cv |" in (project / "reports/summary.md").read_text()

    # up to cv@cnn1d (the report of the first run is checked above)
    out = run(["dvc", "exp", "run", *two, "-S", "cv.folds=[0,1,2]", "cv@cnn1d"], project).stdout
    assert _ran(out) == {"check_params", "cv_fold@cnn1d-2", "cv@cnn1d"}, out
    details = json.loads((project / "metrics/details/cnn1d_cv.json").read_text())
    assert details["cv_folds"] == 3
    oof = pd.read_csv(project / "cv/cnn1d/oof.csv", dtype={"clip_id": str})
    index = pd.read_csv(project / "data/features/index.csv", dtype={"clip_id": str})
    pool = index[index["role"].isin(["train", "valid"])]
    assert sorted(oof["clip_id"]) == sorted(pool["clip_id"])  # every clip once, out of fold
    scores = pd.read_csv(project / "ensembles/cnn1d_cv.csv", dtype={"clip_id": str})
    single = pd.read_csv(project / "predictions/cnn1d.csv", dtype={"clip_id": str})
    assert scores["clip_id"].tolist() == single["clip_id"].tolist()

    table = run([sys.executable, "-m", "audiotag", "compare"], project).stdout
    assert "cnn1d_cv test lwlrap" in table.splitlines()[0]
