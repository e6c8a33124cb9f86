"""The team recipes of docs/team.md across clones, with the real `dvc` CLI: several machines
each running their share of a grid through `dvc queue` and pushing to one git + DVC remote
(and what happens when two push the same experiment name), and clones sharing one cache
directory instead of copying outputs."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from dvc_project import experiments
from mini_project import clone, make_origin, sh

pytestmark = pytest.mark.e2e


def _wait_for_queue(repo: Path, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = sh(["dvc", "queue", "status"], repo).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(2)
    raise AssertionError(f"queue still busy after {timeout} s:\n{status}")


def _shown(repo: Path) -> dict[str, dict]:
    shown = json.loads(sh(["dvc", "exp", "show", "--json"], repo).stdout)
    return {r["name"]: r["data"] for r in experiments(shown) if r.get("name")}


def _lr(data: dict) -> float:
    return data["params"]["params.yaml"]["data"]["train"]["lr"]


def test_machines_run_their_share_of_a_grid_and_push_to_one_remote(tmp_path):
    make_origin(tmp_path, [["remote", "add", "-d", "team", str(tmp_path / "dvc-remote")]])
    grid = [0.001, 0.002, 0.003, 0.004]
    machines = [clone(tmp_path, f"machine{i}") for i in range(2)]
    for i, machine in enumerate(machines):  # machine i of N takes grid[i::N]
        share = ",".join(str(lr) for lr in grid[i::len(machines)])
        sh(["dvc", "exp", "run", "--queue", "-S", f"train.lr={share}"], machine)
        sh(["dvc", "queue", "start", "-j", "1"], machine)
    for machine in machines:  # both queues run at once
        status = _wait_for_queue(machine)
        assert "Failed" not in status, status
        sh(["dvc", "exp", "push", "origin", "--rev", "HEAD"], machine)

    third = clone(tmp_path, "third")
    sh(["dvc", "exp", "pull", "origin", "--all-commits"], third)
    shown = _shown(third)
    assert sorted(_lr(d) for d in shown.values()) == grid  # each grid point exactly once
    name = next(n for n, d in shown.items() if _lr(d) == 0.003)
    sh(["dvc", "exp", "apply", name], third)  # its outputs came from the DVC remote
    assert (third / "model/weights.txt").read_text() == "0.003"

    # two machines push experiments of the same name: the second push is refused (but
    # dvc 3.x exits 0 and uploads the outputs all the same), the remote keeps the first;
    # --force replaces it
    for machine, lr in zip(machines, ("0.005", "0.006"), strict=True):
        sh(["dvc", "exp", "run", "-n", "probe", "-S", f"train.lr={lr}"], machine)
    sh(["dvc", "exp", "push", "origin", "probe"], machines[0])
    refused = sh(["dvc", "exp", "push", "origin", "probe"], machines[1], check=False)
    said = refused.stdout + refused.stderr
    assert "probe has diverged from remote experiment" in said and "--force" in said, said
    sh(["dvc", "exp", "pull", "-f", "origin", "probe"], third)
    assert _lr(_shown(third)["probe"]) == 0.005
    sh(["dvc", "exp", "push", "-f", "origin", "probe"], machines[1])
    sh(["dvc", "exp", "pull", "-f", "origin", "probe"], third)
    assert _lr(_shown(third)["probe"]) == 0.006


def test_clones_share_one_cache_without_copying_outputs(tmp_path):
    make_origin(tmp_path, [])  # no DVC remote at all: the shared cache is the only store
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    alice, bob = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    for repo in (alice, bob):  # the recipe of docs/team.md, per clone (--local)
        sh(["dvc", "cache", "dir", "--local", str(shared)], repo)
        sh(["dvc", "config", "--local", "cache.shared", "group"], repo)
        sh(["dvc", "config", "--local", "cache.type", "symlink"], repo)
    sh(["dvc", "repro"], alice)
    sh(["git", "add", "-A"], alice)
    sh(["git", "commit", "-qm", "result"], alice)
    sh(["git", "push", "-q", "origin", "main"], alice)
    objects = sorted(p for p in shared.rglob("*") if p.is_file())

    sh(["git", "pull", "-q", "origin", "main"], bob)
    sh(["dvc", "checkout"], bob)  # no dvc pull: the objects are already in the cache
    assert "up to date" in sh(["dvc", "status"], bob).stdout
    mine, theirs = alice / "model/weights.txt", bob / "model/weights.txt"
    assert theirs.is_symlink() and mine.is_symlink()  # links, not copies
    assert theirs.resolve() == mine.resolve() and shared in theirs.resolve().parents
    assert sorted(p for p in shared.rglob("*") if p.is_file()) == objects  # nothing added
    assert not (bob / ".dvc/cache").exists()
    # group-shared: the objects are readable by the group, the directories writable by it
    mode = os.stat(theirs.resolve()).st_mode
    assert mode & stat.S_IRGRP
    assert os.stat(theirs.resolve().parent).st_mode & stat.S_IWGRP


# the three kinds of stage of docs/team.md's run-cache paragraph: one with a `persist: true`
# out (train@'s resume state), one whose `cache: false` output is a metric (restored), one
# with a plain `cache: false` out (a committed table or summary: not restored)
_EVALUATE = ("python -c \"import pathlib; w = pathlib.Path('model/weights.txt').read_text(); "
             "pathlib.Path('{out}').write_text('{{\\\"w\\\": ' + w + '}}')\"")
RUN_CACHE_YAML = {"stages": {
    "train": {"cmd": "python train.py && mkdir -p ckpt && touch ckpt/done",
              "deps": ["train.py"], "params": ["train.lr"],
              "outs": ["model", {"ckpt": {"persist": True}}]},
    "evaluate": {"cmd": _EVALUATE.format(out="score.json"), "deps": ["model"],
                 "metrics": [{"score.json": {"cache": False}}]},
    "summary": {"cmd": _EVALUATE.format(out="summary.json"), "deps": ["model"],
                "outs": [{"summary.json": {"cache": False}}]}}}


def _ran(out: str) -> set[str]:
    return {stage for stage in RUN_CACHE_YAML["stages"] if f"Running stage '{stage}'" in out}


def test_a_second_clone_on_the_shared_cache_restores_what_the_run_cache_keeps(tmp_path):
    """docs/team.md's shared cache: with the params another clone ran (uncommitted), `dvc
    repro` restores from the run-cache a stage whose `cache: false` output is a metric,
    and re-runs a stage with a `persist: true` out or a plain `cache: false` out; `dvc gc
    -w` in one clone deletes the objects of the other, `dvc gc -w -p <other clone>` keeps
    them."""
    make_origin(tmp_path, [], dvc_yaml=RUN_CACHE_YAML)
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    alice, bob = clone(tmp_path, "alice"), clone(tmp_path, "bob")
    for repo in (alice, bob):
        sh(["dvc", "cache", "dir", "--local", str(shared)], repo)
        sh(["dvc", "config", "--local", "cache.type", "symlink"], repo)
        (repo / "params.yaml").write_text("train:\n  lr: 0.003\n")  # the same experiment
    assert _ran(sh(["dvc", "repro"], alice).stdout) == {"train", "evaluate", "summary"}
    out = sh(["dvc", "repro"], bob).stdout
    assert _ran(out) == {"train", "summary"}, out
    assert "Stage 'evaluate' is cached - skipping run" in out
    assert (bob / "score.json").read_text() == '{"w": 0.003}' and \
        not (bob / "score.json").is_symlink()  # a cache: false metric, restored as a file

    (bob / "params.yaml").write_text("train:\n  lr: 0.005\n")  # bob moves on
    sh(["dvc", "repro"], bob)
    bobs = (bob / "model/weights.txt").resolve()
    sh(["dvc", "gc", "-w", "-f", "-p", str(bob)], alice)  # keeps what bob's workspace uses
    assert bobs.exists()
    sh(["dvc", "gc", "-w", "-f"], alice)  # only alice's workspace counts
    link = bob / "model/weights.txt"
    assert not bobs.exists() and link.is_symlink() and not link.exists()  # dangling
    assert sh(["dvc", "status"], bob, check=False).returncode != 0  # DVC trips over it
