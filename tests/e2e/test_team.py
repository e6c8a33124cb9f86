"""The team workflow with the real `dvc` CLI: remotes (a local directory and S3 served by
moto on loopback), `dvc exp push/pull` through a bare git remote, a parallel queue compared
by `audiotag compare` (issue 18) and an Optuna search whose trials are DVC experiments."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from dvc_project import commit, env_for, experiments, make_project, moto_s3, run, wait_for_queue

pytestmark = pytest.mark.e2e

# one model; enough test clips for compare's bootstrap to see a difference; no cleaning
TEAM = {"data": {"synthetic": {"n_test": 48}}, "train": {"models": ["cnn1d"]},
        "clean": {"method": "none"}}


@pytest.fixture(scope="module")
def team(repo_root, tmp_path_factory):
    """A project after `dvc repro`, pushed to a bare git 'server' with a local DVC remote."""
    base = tmp_path_factory.mktemp("team")
    project = make_project(repo_root, base / "alice", TEAM)
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
    base, _ = team
    url, client = s3_server
    # a clone of its own: the remote it adds is not committed, and DVC cannot read a
    # committed revision of a project whose config.local names a remote the revision lacks
    sam = _clone(base, "sam")
    run(["dvc", "pull"], sam)
    _add_s3_remote(sam, url)
    run(["git", "check-ignore", "-q", ".dvc/config.local"], sam)
    assert "team-secret" not in (sam / ".dvc/config").read_text()
    assert "team-secret" in (sam / ".dvc/config.local").read_text()
    run(["dvc", "push", "-r", "s3"], sam)
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
    # up to the test metrics (weights and report are other tests')
    run(["dvc", "exp", "run", "-n", "fast-lr", "-S", "train.lr=0.006", "evaluate@cnn1d"], dave)
    run(["dvc", "exp", "push", "origin", "fast-lr"], dave)  # git refs + DVC cache

    erin = _clone(base, "erin")
    run(["dvc", "exp", "pull", "origin", "fast-lr"], erin)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], erin).stdout)
    mine = [r for r in experiments(shown) if r.get("name") == "fast-lr"]
    assert mine, "dave's experiment appears in erin's dvc exp show"
    data = mine[0]["data"]
    assert data["params"]["params.yaml"]["data"]["train"]["lr"] == 0.006
    assert 0.0 < data["metrics"]["metrics/cnn1d.json"]["data"]["cnn1d"]["lwlrap"] <= 1.0
    # the baseline's predictions are in no cache of erin's (no `dvc pull`) and, with the
    # remote out of reach, nowhere: compare still gives the metrics, Δ n/a and the command
    # that fetches them, exit status 0 (issue 29)
    run(["dvc", "remote", "modify", "--local", "shared", "url", str(base / "nowhere")], erin)
    out = run([sys.executable, "-m", "audiotag", "compare"], erin).stdout
    (erin / ".dvc/config.local").unlink()
    fast = next(line.split() for line in out.splitlines() if line.startswith("fast-lr "))
    assert fast[-1] == "n/a" and "fast-lr:" not in out, out  # its own are in the cache
    assert "predictions/cnn1d.csv not in the local DVC cache; `dvc pull` fetches them" in out
    run(["dvc", "exp", "apply", "fast-lr"], erin)  # its outputs come from the remote
    assert (erin / "models/cnn1d/model.pt").exists()


def test_a_queue_runs_in_parallel_and_compare_groups_seeds(team, repo_root):
    """2 configs x 2 seeds queued with `dvc exp run --queue`, run by two workers, compared
    as docs/experiments.md says. The printed table is kept in test-artifacts/compare.txt."""
    _, project = team
    # up to the test metrics that `compare` reads (weights and report are other tests')
    run(["dvc", "exp", "run", "--queue", "-S", "seed=1,2", "-S", "train.lr=0.00001,0.01",
         "evaluate@cnn1d"], project)
    # the workers inherit the command's output pipes: not captured, or `run` waits for them
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=project, env=env_for(project),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wait_for_queue(project, 1500, poll_s=5)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    runs = [r["data"] for r in experiments(shown)]
    assert len(runs) == 4
    # each experiment trained its own model
    assert len({r["metrics"]["metrics/cnn1d.json"]["data"]["cnn1d"]["valid_lwlrap"]
                for r in runs}) > 1
    check_compare(project, repo_root)


def check_compare(root, repo_root):
    """`audiotag compare` over the finished queue of 2 configs x 2 seeds."""
    out = run([sys.executable, "-m", "audiotag", "compare"], root).stdout
    (repo_root / "test-artifacts").mkdir(exist_ok=True)
    (repo_root / "test-artifacts/compare.txt").write_text(out)
    print(out)
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:3] == ["experiments", "train.lr", "n"] and "seed" not in header
    rows = [line.split() for line in lines[1:4]]
    assert sorted(r[1] for r in rows) == ["0.002", "0.01", "1e-05"]
    by_lr = {r[1]: r for r in rows}
    assert by_lr["0.002"][2] == "1" and by_lr["0.002"][-1] == "ref"
    for lr in ("0.01", "1e-05"):
        assert by_lr[lr][2] == "2" and "(2)" in lines[1 + rows.index(by_lr[lr])]
        # the baseline's seed (42) drew its own test set: no clip is shared with it
        assert by_lr[lr][-1] == "n/a"
    # against the 1e-05 row (the same two test sets, paired by seed): a real test
    label = next(line.split()[0] for line in lines[1:4] if " 1e-05 " in line)
    ref = re.sub(r"\+\d+$", "", label)  # "<first experiment>+<more in the row>"
    md = run([sys.executable, "-m", "audiotag", "compare", "--md", "--ref", ref], root).stdout
    (repo_root / "test-artifacts/compare.md").write_text(md)
    print(md)
    row = next(line for line in md.splitlines() if "| 0.01 |" in line)
    delta = row.strip("| ").split(" | ")[-1]
    assert delta[0] in "+-" and float(delta.rstrip("*")) != 0.0, row


def test_optuna_trials_are_dvc_experiments_and_resume(team, tmp_path):
    _, project = team
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {type: float, low: 0.001, high: 0.01, log: true}\n")
    cmd = [sys.executable, "-m", "audiotag.tune", "--space", str(space), "--study", "t",
           "--metric", "valid_lwlrap"]
    out = run([*cmd, "--trials", "1"], project)
    assert "running 1 more" in out.stderr and "best: trial" in out.stderr
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    assert "t-0" in {r.get("name") for r in experiments(shown)}

    # a resumed study runs only what is missing: here nothing (what a resumed study samples
    # next: tests/unit/test_tune.py, with a stand-in objective)
    out = run([*cmd, "--trials", "1"], project)
    assert "1 trial(s) finished, running 0 more" in out.stderr and "best: trial" in out.stderr
    with sqlite3.connect(project / ".tune/t.db") as db:
        states = [s for (s,) in db.execute("select state from trials")]
        # the default pruner watched the trial: epoch 1 of 2 reported from dvclive's curve
        steps = db.execute("select step, intermediate_value from trial_intermediate_values")
        steps = steps.fetchall()
    assert states == ["COMPLETE"]
    assert [step for step, _ in steps] == [1] and 0 < steps[0][1] <= 1, steps
    assert not run(["git", "status", "--porcelain", "params.yaml"], project).stdout, \
        "trials run in temporary copies: the workspace params are untouched"
