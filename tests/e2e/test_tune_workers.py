"""One Optuna study, several worker machines: a real PostgreSQL server (Debian's package,
started here on a loopback port, its data in a temp dir) holds the study; two workers in
two clones run `audiotag tune` at once, claim trials through the database, retry a trial
that crashed, and push each finished trial as a DVC experiment (git refs to a bare git
remote, outputs to an S3 remote served by moto); a third clone pulls the whole study.

The project is a one-stage DVC project (no torch) so the trials take seconds: what is under
test is the tuner's distribution of work, not the audio pipeline (tests/e2e/test_team.py runs
the tuner on that)."""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from dvc_project import env_for, experiments, free_port, moto_s3
from mini_project import EPOCHS_TRAIN, clone, make_origin

pytestmark = pytest.mark.e2e

S3_KEYS = {"AWS_ACCESS_KEY_ID": "team-key", "AWS_SECRET_ACCESS_KEY": "team-secret"}


def _postgres_bin() -> Path | None:
    """Debian keeps the server binaries in /usr/lib/postgresql/<version>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture()
def postgres():
    """A PostgreSQL server on a free loopback port, its data in a temp dir; yields the URL
    of an empty database. initdb refuses to run as root: as root it runs as `postgres`."""
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; `make "
                    "postgresql` installs Debian's package")
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server")
    root = Path(tempfile.mkdtemp(prefix="audiotag-pg-"))
    if user:
        os.chown(root, user.pw_uid, user.pw_gid)
    as_user = {"user": user.pw_uid, "group": user.pw_gid} if user else {}
    port = free_port()
    data = root / "data"

    def pg(*args: str) -> None:
        subprocess.run([str(bindir / args[0]), *args[1:]], check=True, capture_output=True,
                       cwd=root, timeout=120, **as_user)

    pg("initdb", "-D", str(data), "-U", "tuner", "--auth=trust", "-E", "UTF8", "--no-sync")
    pg("pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w", "start", "-o",
       f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off")
    try:
        import psycopg

        with psycopg.connect(f"postgresql://tuner@127.0.0.1:{port}/postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE optuna")
        yield f"postgresql://tuner@127.0.0.1:{port}/optuna"
    finally:
        pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def s3_url():
    pytest.importorskip("boto3")
    with moto_s3("team") as (url, _):
        yield url


def _env(repo_root: Path, cwd: Path) -> dict[str, str]:
    # the S3 credentials come from the environment: nothing in any config file
    return {**env_for(cwd), **S3_KEYS, "PYTHONPATH": str(repo_root / "src")}


def _git(args: list[str], cwd: Path, repo_root: Path) -> str:
    return subprocess.run(args, cwd=cwd, env=_env(repo_root, cwd), check=True,
                          capture_output=True, text=True, timeout=300).stdout


@pytest.fixture()
def team(tmp_path, s3_url):
    """A bare git remote holding a one-stage DVC project whose DVC remote is the S3 bucket."""
    make_origin(tmp_path, [["remote", "add", "-d", "team", "s3://team/dvc"],
                           ["remote", "modify", "team", "endpointurl", s3_url],
                           ["remote", "modify", "team", "region", "us-east-1"]])
    space = tmp_path / "space.yaml"
    space.write_text("train.lr: {type: float, low: 0.0001, high: 0.1, log: true}\n")
    return tmp_path, space


def _clone(base: Path, name: str, repo_root: Path) -> Path:
    return clone(base, name, _env(repo_root, base))


def test_two_workers_share_one_postgres_study_and_push_every_trial(team, postgres, repo_root):
    import optuna

    from audiotag.tune import storage_url

    base, space = team
    trials = 6
    workers = []
    for name in ("worker1", "worker2"):
        clone = _clone(base, name, repo_root)
        cmd = [sys.executable, "-m", "audiotag.tune", "--repo", str(clone), "--space",
               str(space), "--study", "team", "--storage", postgres, "--trials", str(trials),
               "--metric", "metrics.json:score", "--push", "origin", "--heartbeat", "2"]
        env = {**_env(repo_root, clone), "CRASH_ONCE": str(base / "crashed")}
        workers.append(subprocess.Popen(cmd, cwd=clone, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))
    logs = [w.communicate(timeout=600)[0] for w in workers]
    for w, log in zip(workers, logs, strict=True):
        assert w.returncode == 0, log[-3000:]

    study = optuna.load_study(study_name="team", storage=storage_url(postgres, base, "team"))
    states = Counter(t.state.name for t in study.trials)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) >= trials and states["FAIL"] == 1, states  # the one simulated crash
    assert not states.keys() - {"COMPLETE", "FAIL"}, states
    # the crashed trial was retried with the same values, and that retry completed
    crashed = next(t for t in study.trials if t.state.name == "FAIL")
    retry = [t for t in done if t.system_attrs.get("failed_trial") == crashed.number]
    assert len(retry) == 1 and retry[0].params == crashed.params
    # both workers ran trials
    for log in logs:
        assert re.search(r"trial \d+ \(team-\d+\): metrics.json:score", log), log[-3000:]

    # every completed trial is exactly one experiment on the git remote
    names = [t.user_attrs["experiment"] for t in done]
    refs = _git(["git", "for-each-ref", "--format=%(refname)", "refs/exps"],
                base / "origin.git", repo_root).split()
    assert sorted(ref.rsplit("/", 1)[-1] for ref in refs) == sorted(names)

    # a third clone pulls the whole study: params, metrics and outputs
    third = _clone(base, "third", repo_root)
    _git(["dvc", "exp", "pull", "origin", *names], third, repo_root)
    shown = json.loads(_git(["dvc", "exp", "show", "--json"], third, repo_root))
    by_name = {r["name"]: r["data"] for r in experiments(shown) if r.get("name") in names}
    assert sorted(by_name) == sorted(names)
    for t in done:
        data = by_name[t.user_attrs["experiment"]]
        assert data["params"]["params.yaml"]["data"]["train"]["lr"] == t.params["train.lr"]
        assert data["metrics"]["metrics.json"]["data"]["score"] == pytest.approx(t.value)
    for t in done:  # the outputs came through the S3 remote
        _git(["dvc", "exp", "apply", t.user_attrs["experiment"]], third, repo_root)
        assert (third / "model/weights.txt").read_text() == repr(t.params["train.lr"])


def _epochs_origin(base: Path, space: str) -> Path:
    """A bare git remote of the one-stage project with epochs (mini_project.EPOCHS_TRAIN:
    per-epoch validation lwlrap where train@ writes it); no DVC remote. Returns the space."""
    make_origin(base, [], train=EPOCHS_TRAIN,
                params={"train": {"lr": 0.01, "models": ["m"], "epochs": 6}})
    path = base / "space.yaml"
    path.write_text(space)
    return path


def _tuner(clone: Path, space: Path, storage: str, repo_root: Path, *extra: str,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "audiotag.tune", "--repo", str(clone), "--space",
           str(space), "--study", "grid", "--storage", storage, "--metric",
           "metrics.json:score", "--grid", *extra]
    return subprocess.Popen(cmd, cwd=clone, env={**_env(repo_root, clone), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own group: killed as a machine


def test_a_bad_region_is_pruned_before_its_last_epoch(tmp_path, repo_root):
    """Five grid points, the last one in the bad region (lr >= 0.05: lwlrap 0.1 at every
    epoch): the first four complete, the median pruner stops the fifth after two of its six
    epochs, and its `dvc exp run` is ended (no experiment is left of it)."""
    import optuna

    choices = [0.001, 0.002, 0.003, 0.004, 0.1]
    space = _epochs_origin(tmp_path, f"train.lr: {{type: categorical, choices: {choices}}}\n")
    # a seed whose grid order puts the bad point last (after the pruner's 4 startup trials)
    seed = next(s for s in range(100) if optuna.samplers.GridSampler(
        {"train.lr": choices}, seed=s)._all_grids[-1] == (0.1,))
    clone = _clone(tmp_path, "worker", repo_root)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    worker = _tuner(clone, space, storage, repo_root, "--pruner", "median", "--seed",
                    str(seed), env={"EPOCH_S": "1"})
    log = worker.communicate(timeout=600)[0]
    assert worker.returncode == 0, log[-3000:]

    study = optuna.load_study(study_name="grid", storage=storage)
    states = {t.params["train.lr"]: t.state.name for t in study.trials}
    assert states == {**dict.fromkeys(choices[:4], "COMPLETE"), 0.1: "PRUNED"}, states
    pruned = next(t for t in study.trials if t.state.name == "PRUNED")
    assert 2 <= pruned.last_step < 6 and set(pruned.intermediate_values.values()) == {0.1}
    assert re.search(r"trial +\d+ +pruned after epoch [2-5]", log), log[-3000:]
    shown = json.loads(_git(["dvc", "exp", "show", "--json"], clone, repo_root))
    names = {r.get("name") for r in experiments(shown)}
    assert pruned.user_attrs["experiment"] not in names
    # DVC's record of the pruned run names its temporary copy, which Ctrl-C removed
    records = [json.loads(p.read_text()) for p in clone.glob(".dvc/tmp/exps/run/*/*.run")]
    copy = next(r["root_dir"] for r in records if r.get("name") == pruned.user_attrs["experiment"])
    assert not Path(copy).exists()
    assert {t.user_attrs["experiment"] for t in study.trials if t.state.name == "COMPLETE"} \
        <= names


def test_a_grid_over_postgres_survives_a_killed_worker(tmp_path, postgres, repo_root):
    """Two workers pull the points of one grid from PostgreSQL; the first one's machine
    dies (its whole process group killed) while its trial hangs; the other runs the rest of
    the grid and, once the dead trial's heartbeat is stale, that point too."""
    import optuna

    from audiotag.tune import storage_url

    choices = [0.001, 0.002, 0.003, 0.004]
    space = _epochs_origin(tmp_path, f"train.lr: {{type: categorical, choices: {choices}}}\n")
    hung = tmp_path / "hung"
    args = ("--heartbeat", "2", "--set", "train.epochs=1")
    first = _tuner(_clone(tmp_path, "worker1", repo_root), space, postgres, repo_root, *args,
                   env={"HANG_ONCE": str(hung)})
    second = _tuner(_clone(tmp_path, "worker2", repo_root), space, postgres, repo_root, *args)
    for _ in range(600):
        if hung.exists() or first.poll() is not None:
            break
        time.sleep(0.5)
    assert hung.exists(), first.communicate()[0][-3000:]
    os.killpg(first.pid, signal.SIGKILL)  # the tuner, its `dvc exp run` and the stage
    first.communicate()
    log = second.communicate(timeout=600)[0]
    assert second.returncode == 0, log[-3000:]

    study = optuna.load_study(study_name="grid", storage=storage_url(postgres, tmp_path, "g"))
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    failed = [t for t in study.trials if t.state.name == "FAIL"]
    assert sorted(t.params["train.lr"] for t in done) == choices  # every point, once
    assert len(failed) == 1 and len(study.trials) == len(choices) + 1
    retry = next(t for t in done if t.system_attrs.get("failed_trial") == failed[0].number)
    assert retry.params == failed[0].params
    assert f"trial {retry.number} (grid-{retry.number})" in log  # the survivor re-ran it
