"""The team workflow with the real `dvc` CLI: remotes (a local directory and S3 served by
moto on loopback), `dvc exp push/pull` through a bare git remote, a parallel queue and an
Optuna search whose trials are DVC experiments."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from dvc_project import commit, experiments, make_project, moto_s3, run, wait_for_queue

pytestmark = pytest.mark.e2e

ONE_MODEL = {"train": {"models": ["cnn1d"]}}


@pytest.fixture(scope="module")
def team(repo_root, tmp_path_factory):
    """A project after `dvc repro`, pushed to a bare git 'server' with a local DVC remote."""
    base = tmp_path_factory.mktemp("team")
    project = make_project(repo_root, base / "alice", ONE_MODEL)
    run(["dvc", "repro"], project)
    run(["git", "init", "-q", "--bare", "-b", "main", str(base / "server.git")], base)
    run(["git", "remote", "add", "origin", str(base / "server.git")], project)
    run(["dvc", "remote", "add", "-d", "shared", str(base / "dvc-remote")], project)
    commit(project, "baseline")
    run(["git", "push", "-q", "origin", "main"], project)
    run(["dvc", "push"], project)
    return base, project


def _clone(base: Path, name: str) -> Path:
    run(["git", "clone", "-q", str(base / "server.git"), name], base)
    return base / name


def _assert_nothing_to_run(clone: Path) -> None:
    out = run(["dvc", "repro"], clone).stdout
    assert "Running stage" not in out, out
    assert "up to date" in run(["dvc", "status"], clone).stdout


def test_teammate_pulls_from_a_local_remote_and_repro_runs_nothing(team):
    base, project = team
    bob = _clone(base, "bob")
    assert not (bob / "models/cnn1d/model.pt").exists()
    run(["dvc", "pull"], bob)
    assert (bob / "models/cnn1d/model.pt").read_bytes() == \
        (project / "models/cnn1d/model.pt").read_bytes()
    _assert_nothing_to_run(bob)


@pytest.fixture()
def s3_server():
    pytest.importorskip("boto3")
    with moto_s3("audio-cache") as server:
        yield server


def _add_s3_remote(clone: Path, url: str) -> None:
    run(["dvc", "remote", "add", "s3", "s3://audio-cache/dvc"], clone)
    run(["dvc", "remote", "modify", "s3", "endpointurl", url], clone)
    run(["dvc", "remote", "modify", "s3", "region", "us-east-1"], clone)
    # credentials go to .dvc/config.local: git-ignored, never committed
    run(["dvc", "remote", "modify", "--local", "s3", "access_key_id", "team-key"], clone)
    run(["dvc", "remote", "modify", "--local", "s3", "secret_access_key", "team-secret"], clone)


def test_round_trip_through_s3_keeps_credentials_out_of_git(team, s3_server):
    base, project = team
    url, client = s3_server
    _add_s3_remote(project, url)
    run(["git", "check-ignore", "-q", ".dvc/config.local"], project)
    assert "team-secret" not in (project / ".dvc/config").read_text()
    assert "team-secret" in (project / ".dvc/config.local").read_text()
    run(["dvc", "push", "-r", "s3"], project)
    stored = client.list_objects_v2(Bucket="audio-cache", Prefix="dvc/")
    assert stored.get("KeyCount", 0) > 10, "the cache objects are in the bucket"

    carol = _clone(base, "carol")
    _add_s3_remote(carol, url)
    run(["dvc", "pull", "-r", "s3"], carol)
    _assert_nothing_to_run(carol)
    tracked = run(["git", "ls-files"], carol).stdout.split()
    assert ".dvc/config.local" not in tracked


def test_experiments_travel_between_clones(team):
    base, project = team
    dave = _clone(base, "dave")
    run(["dvc", "pull"], dave)
    run(["dvc", "exp", "run", "-n", "fast-lr", "-S", "train.lr=0.006"], dave)
    run(["dvc", "exp", "push", "origin", "fast-lr"], dave)  # git refs + DVC cache

    erin = _clone(base, "erin")
    run(["dvc", "exp", "pull", "origin", "fast-lr"], erin)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], erin).stdout)
    mine = [r for r in experiments(shown) if r.get("name") == "fast-lr"]
    assert mine, "dave's experiment appears in erin's dvc exp show"
    data = mine[0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["lr"] == 0.006
    assert 0.0 < data["metrics"]["metrics/cnn1d.json"]["data"]["lwlrap"] <= 1.0
    run(["dvc", "exp", "apply", "fast-lr"], erin)  # its outputs come from the remote
    assert (erin / "models/cnn1d/model.pt").exists()


def test_a_queue_runs_two_experiments_in_parallel(team):
    _, project = team
    run(["dvc", "exp", "run", "--queue", "-S", "train.lr=0.001,0.004"], project)
    run(["dvc", "queue", "start", "-j", "2"], project)
    wait_for_queue(project, 600)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    runs = {r["data"]["params"]["params.yaml"]["data"]["train"]["lr"]: r["data"]["metrics"]
            for r in experiments(shown)}
    assert {0.001, 0.004} <= set(runs)
    lwlraps = [runs[lr]["metrics/cnn1d.json"]["data"]["lwlrap"] for lr in (0.001, 0.004)]
    assert all(0.0 < v <= 1.0 for v in lwlraps)
    # each experiment trained its own model (its own training time)
    seconds = [runs[lr]["metrics/cnn1d.json"]["data"]["train_seconds"] for lr in (0.001, 0.004)]
    assert all(s > 0 for s in seconds)


def test_optuna_trials_are_dvc_experiments_and_resume(team, tmp_path):
    _, project = team
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {type: float, low: 0.001, high: 0.01, log: true}\n")
    cmd = [sys.executable, "-m", "audiotag.tune", "--space", str(space), "--study", "t",
           "--metric", "valid_lwlrap"]
    out = run([*cmd, "--trials", "2"], project)
    assert "running 2 more" in out.stderr and "best: trial" in out.stderr
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    names = {r.get("name") for r in experiments(shown)}
    assert {"t-0", "t-1"} <= names

    out = run([*cmd, "--trials", "3"], project)  # a resumed study runs only what is missing
    assert "2 trial(s) completed, running 1 more" in out.stderr
    with sqlite3.connect(project / ".tune/t.db") as db:
        states = [s for (s,) in db.execute("select state from trials")]
    assert states == ["COMPLETE"] * 3
    assert not run(["git", "status", "--porcelain", "params.yaml"], project).stdout, \
        "trials run in temporary copies: the workspace params are untouched"
