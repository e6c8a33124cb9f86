"""What a DVC project's stages write with its current params (dvc.yaml rendered by DVC's own
API, as `dvc repro` sees it) and what git does with each output: the checks behind "a clone
holds every output, from git or from the DVC remote, and nothing stale" (issue 29). Each
``*`` function returns the problems it finds, one line each; an empty list is a pass."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path, PurePosixPath

import yaml

# where stages write; the top folder of every current out is added to these
OUTPUT_TREES = ("data", "metrics", "plots", "predictions", "ensembles", "reports", "models",
                "checkpoints", "cv")


def current_outs(root: Path) -> dict[str, bool]:
    """Every out (metrics and plots of stages included) of every stage that dvc.yaml defines
    with the current params.yaml: path relative to ``root`` -> whether DVC caches it."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {Path(os.path.relpath(out.fs_path, repo.root_dir)).as_posix(): out.use_cache
                for stage in repo.index.stages for out in stage.outs}


def current_stages(root: Path) -> set[str]:
    """The names (``train@cnn1d``: dvc.lock's keys) of every stage dvc.yaml defines with the
    current params."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {stage.name for stage in repo.index.stages}


def git_files(root: Path) -> list[str]:
    """The files git tracks (its index: what the next commit holds)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True,
                            check=True).stdout.decode()
    return [path for path in listed.split("\0") if path]


def git_ignored(root: Path, paths: list[str]) -> set[str]:
    """Those of ``paths`` that git's ignore rules match, tracked or not (``--no-index``: a
    stage's next write of the path is what matters, not whether an old one was committed)."""
    result = subprocess.run(["git", "check-ignore", "--no-index", "--stdin", "-z"], cwd=root,
                            input="\0".join(paths).encode(), capture_output=True)
    if result.returncode not in (0, 1):  # 1: none ignored
        raise RuntimeError(f"git check-ignore failed: {result.stderr.decode()}")
    return {path for path in result.stdout.decode().split("\0") if path}


def _covers(out: str, path: str) -> bool:
    return path == out or path.startswith(out + "/")


def _trees(outs: dict[str, bool]) -> set[str]:
    return set(OUTPUT_TREES) | {PurePosixPath(out).parts[0] for out in outs}


def stale_lock_entries(root: Path) -> list[str]:
    """dvc.lock entries of stages that dvc.yaml with the current params does not define
    (DVC never removes them: `dvc repro` rewrites only the stages it runs)."""
    lock_file = root / "dvc.lock"
    if not lock_file.exists():
        return []
    locked = (yaml.safe_load(lock_file.read_text()) or {}).get("stages") or {}
    return [f"dvc.lock: {name}" for name in sorted(set(locked) - current_stages(root))]


def stale_gitignore_lines(root: Path) -> list[str]:
    """Lines of the .gitignore files under the output trees (DVC writes one `/name` line
    for each cached out) that name no current cached out."""
    outs = current_outs(root)
    cached = {out for out, use_cache in outs.items() if use_cache}
    trees = _trees(outs)
    stale = []
    for rel in git_files(root):
        path = PurePosixPath(rel)
        if path.name != ".gitignore" or len(path.parts) < 2 or path.parts[0] not in trees:
            continue
        for line in (root / rel).read_text().splitlines():
            entry = line.strip()
            if entry and not entry.startswith("#") and \
                    (path.parent / entry.lstrip("/")).as_posix() not in cached:
                stale.append(f"{rel}: {entry}")
    return stale


def misplaced_outs(root: Path) -> list[str]:
    """Outputs neither git nor the DVC remote would carry: a `cache: false` out that git
    ignores, and a cached out that git does not ignore (or tracks)."""
    outs = current_outs(root)
    ignored = git_ignored(root, sorted(outs))
    tracked = git_files(root)
    problems = [f"{out}: cache: false, but git ignores it" for out, use_cache in outs.items()
                if not use_cache and out in ignored]
    for out in (out for out, use_cache in outs.items() if use_cache):
        if out not in ignored:
            problems.append(f"{out}: cached by DVC, but git does not ignore it")
        if any(_covers(out, path) for path in tracked):
            problems.append(f"{out}: cached by DVC, but committed to git too")
    return problems


def uncommitted_outs(root: Path) -> list[str]:
    """`cache: false` outs that git does not track: a clone lacks them, so its first
    `dvc repro` re-runs their stage."""
    tracked = git_files(root)
    return [f"{out}: cache: false, but not committed" for out, use_cache in
            current_outs(root).items()
            if not use_cache and not any(_covers(out, path) for path in tracked)]


def unwritten_committed_files(root: Path) -> list[str]:
    """Committed files under the output trees that no current stage writes: neither an out
    nor inside a directory out (.gitignore files: :func:`stale_gitignore_lines`; `.dvc`
    files of `dvc add` are not outputs)."""
    outs = current_outs(root)
    trees = _trees(outs)
    return [f"{path}: committed, but no stage writes it" for path in git_files(root)
            if PurePosixPath(path).parts[0] in trees and len(PurePosixPath(path).parts) > 1
            and not path.endswith((".gitignore", ".dvc"))
            and not any(_covers(out, path) for out in outs)]
