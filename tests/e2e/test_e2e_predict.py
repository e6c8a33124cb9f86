"""End to end with the real `dvc` CLI: a tiny trained model used outside the pipeline
(`audiotag predict` on the raw test audio, evaluate's per-clip predictions, the model
fetched as a DVC artifact from a local remote)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dvc_project import commit, run

from audiotag.data.manifest import labels_to_matrix, read_classes
from audiotag.metrics.lwlrap import per_class_lwlrap

pytestmark = pytest.mark.e2e
MODEL = "cnn1d"  # a default model: the shared tiny project trains it


@pytest.fixture(scope="module")
def project(project_copy) -> Path:
    """A copy of the shared tiny project after `dvc repro` (tests/e2e/conftest.py)."""
    root = project_copy("predict")
    assert (root / "metrics" / f"{MODEL}.json").exists()
    return root


def _test_clips(root: Path) -> pd.DataFrame:
    manifest = pd.read_csv(root / "data/raw/manifest.csv", dtype={"clip_id": str, "labels": str},
                           keep_default_na=False)
    test = manifest[manifest["subset"] == "test"].copy()
    test["file"] = [str(root / "data/raw" / p) for p in test["path"]]
    return test


def test_predict_on_raw_test_audio_reproduces_evaluate(project, tmp_path):
    test = _test_clips(project)
    out = tmp_path / "preds.csv"
    run([sys.executable, "-m", "audiotag", "predict", "--checkpoint",
         f"models/{MODEL}/model.pt", "--out", str(out), "--top-k", "2", "--no-progress",
         "--device", "cpu", *test["file"]], project)
    preds = pd.read_csv(out, keep_default_na=False).set_index("path").loc[test["file"]]
    classes = read_classes(project / "data/raw/classes.txt")
    scores = preds[classes].to_numpy()
    lwlrap = per_class_lwlrap(labels_to_matrix(test["labels"], classes), scores).overall
    metrics = json.loads((project / "metrics/details" / f"{MODEL}.json").read_text())
    assert metrics["n_test_clips"] == len(test) == len(preds)
    assert lwlrap == pytest.approx(metrics["lwlrap"], abs=0.005)
    # clip by clip too: evaluate's per-clip predictions hold the same scores
    per_clip = pd.read_csv(project / "predictions" / f"{MODEL}.csv",
                           dtype={"clip_id": str, "labels": str}, keep_default_na=False)
    assert per_clip.columns.tolist() == ["clip_id", "labels", *classes]
    per_clip = per_clip.set_index("clip_id").loc[test["clip_id"]]
    assert per_clip["labels"].tolist() == test["labels"].tolist()
    np.testing.assert_allclose(per_clip[classes].to_numpy(), scores, atol=1e-3)


def test_model_artifact_is_fetched_from_a_local_remote(project, tmp_path):
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "local", str(remote)], project)
    run(["dvc", "push", f"train@{MODEL}"], project)
    commit(project, "trained")
    # a version of an artifact is a git tag <name>@v<semver> (GTO's convention)
    run(["git", "tag", "-a", f"{MODEL}@v0.1.0", "-m", f"{MODEL} v0.1.0"], project)
    want = (project / "models" / MODEL / "model.pt").read_bytes()
    shutil.rmtree(project / ".dvc" / "cache")  # only the remote holds the model now
    got = tmp_path / "got"
    got.mkdir()
    run(["dvc", "artifacts", "get", str(project), MODEL, "-o", "artifact.pt"], got)
    assert (got / "artifact.pt").read_bytes() == want  # the latest version
    run(["dvc", "artifacts", "get", str(project), MODEL, "--rev", "v0.1.0", "-o", "v.pt"], got)
    assert (got / "v.pt").read_bytes() == want
    run(["dvc", "get", str(project), f"models/{MODEL}/model.pt", "-o", "plain.pt"], got)
    assert (got / "plain.pt").read_bytes() == want
