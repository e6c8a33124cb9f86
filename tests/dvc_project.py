"""Shared setup of the end-to-end tests: this repository as a fresh clone would hold it (every
file git tracks or would add) in a new git repo with tiny params, driven through the real
`dvc` CLI."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

# seconds, not minutes: a handful of short clips at 8 kHz, two epochs
TINY = {
    "data": {"synthetic": {"n_curated": 20, "n_noisy": 20, "n_test": 12, "sample_rate": 8000,
                           "min_seconds": 0.5, "max_seconds": 2.0, "num_classes": 6}},
    "features": {"sample_rate": 8000, "n_fft": 256, "hop_length": 128, "n_mels": 32,
                 "fmax": 4000.0, "clip_seconds": 1.0},
    "train": {"epochs": 2, "batch_size": 8},
}


def merge(base: dict, override: dict) -> dict:
    """Deep-merge ``override`` into ``base`` (in place) and return it."""
    for key, value in override.items():
        base[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def env_for(cwd: Path) -> dict[str, str]:
    return {**os.environ,
            # stage scripts must import this copy's src, and `python` must be this venv's
            "PYTHONPATH": str(cwd / "src"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
            "DVC_NO_ANALYTICS": "1"}


def run(cmd: list[str], cwd: Path, check: bool = True,
        timeout: float | None = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env_for(cwd), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def clone_files(repo_root: Path) -> list[str]:
    """What a clone of ``repo_root`` holds once its work in progress is committed: every file
    git tracks and every untracked file git does not ignore (paths relative to ``repo_root``).
    Not a `git clone`: that would leave out the uncommitted work a test run is meant to check
    (and point `origin` at this repository)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=repo_root, capture_output=True, check=True).stdout.decode()
    return [path for path in listed.split("\0") if path]


def make_project(repo_root: Path, root: Path, *overrides: dict) -> Path:
    """This repository's files (:func:`clone_files`: committed outputs, dvc.lock and nested
    .gitignore files included) at ``root``, as a committed git repo with tiny params."""
    root.mkdir(parents=True, exist_ok=True)
    for rel in clone_files(repo_root):
        src = repo_root / rel
        if src.is_file():  # a tracked file deleted in the work tree: gone at the next commit
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    assert (root / ".dvc/config").is_file(), "the repository commits .dvc/config"
    params = merge(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    for override in overrides:
        merge(params, override)
    for settings in params["models"].values():  # a model's own epochs (cnn2d's 20) are tiny too
        if "epochs" in (settings or {}).get("train", {}):
            settings["train"]["epochs"] = params["train"]["epochs"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], root)
    # what `make install` does in a clone: the offline `dvc plots show` page template
    run([sys.executable, "-m", "audiotag.plots.offline"], root)
    commit(root, "init")
    return root


def copy_project(src: Path, dest: Path) -> Path:
    """A copy of the project at ``src`` (work tree, git history, DVC cache) at ``dest``:
    DVC keeps no absolute paths inside a project, so the copy is a project of its own."""
    shutil.copytree(src, dest, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def commit(root: Path, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", message, "--allow-empty"], root)


def experiments(shown: list[dict]) -> list[dict]:
    """Every experiment run record of ``dvc exp show --json`` output."""
    return [run_ for rev in shown for exp in (rev.get("experiments") or [])
            for run_ in (exp.get("revs") or [])]


def free_port() -> int:
    """A loopback TCP port nobody listens on now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3(bucket: str, key: str = "team-key", secret: str = "team-secret"):
    """A real S3 API (moto's server) on a loopback port with ``bucket`` created; yields
    ``(endpoint_url, boto3 client)`` and stops the server afterwards."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id=key, aws_secret_access_key=secret)
        client.create_bucket(Bucket=bucket)
        yield url, client
    finally:
        server.stop()


def wait_for_queue(root: Path, timeout_s: float, poll_s: float = 3.0) -> str:
    """Poll `dvc queue status` until nothing is queued or running (or ``timeout_s``
    passes); asserts no task failed or was left queued and returns the last status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = run(["dvc", "queue", "status"], root).stdout
        if ("Queued" not in status and "Running" not in status) or \
                time.monotonic() > deadline:
            break
        time.sleep(poll_s)
    assert "Failed" not in status and "Queued" not in status, status
    return status
