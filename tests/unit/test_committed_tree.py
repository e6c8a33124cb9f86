"""Nothing stale is committed (issue 29): the repository holds no dvc.lock entry, `.gitignore`
line or output file that `dvc repro` with the current params would not produce, and every
output travels with a clone, in git (`cache: false`) or through the DVC remote (cached).
Derived from dvc.yaml + params.yaml (DVC's own rendering, in process) and git; each check is
first shown to find what it looks for in a small planted project."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from dvc_outputs import (
    misplaced_outs,
    stale_gitignore_lines,
    stale_lock_entries,
    uncommitted_outs,
    unwritten_committed_files,
)

# what to do about each finding
CHECKS = {
    stale_lock_entries: "DVC keeps them; remove them from dvc.lock (dvc.utils.serialize."
                        "modify_yaml keeps its layout)",
    stale_gitignore_lines: "left from an out that is gone or no longer cached: delete the line",
    misplaced_outs: "a `cache: false` out must be committed, a cached one ignored: fix "
                    "the .gitignore line or the out's `cache:`",
    uncommitted_outs: "`dvc repro`, then `git add` them",
    unwritten_committed_files: "`git rm` them (an out that was renamed or a model dropped)",
}


@pytest.fixture(scope="module")
def committed(repo_root) -> Path:
    if subprocess.run(["git", "rev-parse"], cwd=repo_root, capture_output=True).returncode:
        pytest.skip("not a git checkout: the committed tree is unknown")
    return repo_root


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_committed_tree_has_nothing_stale(committed, check):
    problems = check(committed)
    assert not problems, "\n".join([*problems, f"-> {CHECKS[check]}"])


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.fixture()
def planted(tmp_path) -> Path:
    """A project of one foreach stage over `models: [a]` (out/<m>.txt `cache: false`,
    out/<m>.bin cached) whose committed tree still holds model b's outputs, and a.txt
    ignored as when it was cached."""
    from dvc.repo import Repo

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    Repo.init(str(tmp_path))
    stage = {"foreach": "${models}", "do": {"cmd": "echo ${item}", "outs": [
        {"out/${item}.txt": {"cache": False}}, "out/${item}.bin"]}}
    lock = {"schema": "2.0", "stages": {f"make@{m}": {"cmd": f"echo {m}"} for m in "ab"}}
    _write(tmp_path, {"dvc.yaml": yaml.safe_dump({"stages": {"make": stage}}),
                      "params.yaml": "models: [a]\n", "dvc.lock": yaml.safe_dump(lock),
                      "out/.gitignore": "/a.bin\n/b.bin\n/a.txt\n", "out/b.txt": "b\n",
                      "out/b.bin": "b\n"})
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "-f", "out/b.bin"], cwd=tmp_path, check=True)
    return tmp_path


def test_each_check_finds_what_is_planted(planted):
    assert stale_lock_entries(planted) == ["dvc.lock: make@b"]
    assert stale_gitignore_lines(planted) == ["out/.gitignore: /b.bin",
                                              "out/.gitignore: /a.txt"]
    assert misplaced_outs(planted) == ["out/a.txt: cache: false, but git ignores it"]
    assert uncommitted_outs(planted) == ["out/a.txt: cache: false, but not committed"]
    assert unwritten_committed_files(planted) == ["out/b.bin: committed, but no stage writes it",
                                                  "out/b.txt: committed, but no stage writes it"]
    (planted / "out/.gitignore").write_text("/a.bin\n")  # a.bin cached, so ignored: fine
    (planted / "out/a.bin").write_text("a\n")
    subprocess.run(["git", "add", "-f", "out/a.bin"], cwd=planted, check=True)
    assert misplaced_outs(planted) == ["out/a.bin: cached by DVC, but committed to git too"]
    (planted / "out/.gitignore").write_text("")
    assert "out/a.bin: cached by DVC, but git does not ignore it" in misplaced_outs(planted)
