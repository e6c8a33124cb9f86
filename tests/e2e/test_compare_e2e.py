"""`audiotag compare` on a real queue (issue 18): a tiny project, 2 configs × 2 seeds queued
with `dvc exp run --queue`, compared as docs/experiments.md says. The printed table is kept
in test-artifacts/compare.txt."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from dvc_project import commit, env_for, make_project, run, wait_for_queue

pytestmark = pytest.mark.e2e

TINY_COMPARE = {
    "data": {"synthetic": {"n_test": 48}},  # enough test clips for the bootstrap to see
    "train": {"models": ["cnn1d"], "epochs": 2},
    "clean": {"method": "none"},
}


def test_compare_groups_seeds_and_marks_significance(repo_root, tmp_path):
    root = make_project(repo_root, tmp_path / "p", TINY_COMPARE)
    run(["dvc", "repro"], root)
    commit(root, "baseline")
    run(["dvc", "exp", "run", "--queue", "-S", "seed=1,2", "-S", "train.lr=0.00001,0.01"],
        root)
    # the workers inherit the command's output pipes: not captured, or `run` waits for them
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=root, env=env_for(root),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wait_for_queue(root, 1500, poll_s=5)
    check_compare(root, repo_root)


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
