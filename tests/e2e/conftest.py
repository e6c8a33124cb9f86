"""The tiny pipeline, reproduced once per test session and copied by each module that starts
from it (a copy takes a second; a `dvc repro` of the tiny pipeline about a minute)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dvc_project import copy_project, make_project, run
from filelock import FileLock


def _build(repo_root: Path, root: Path) -> Path:
    make_project(repo_root, root)  # the default params, TINY: the default models
    run(["dvc", "repro"], root, timeout=None)  # as long as it takes on a busy machine
    return root


@pytest.fixture(scope="session")
def reproduced(repo_root, tmp_path_factory) -> Path:
    """A committed tiny project after a full `dvc repro` (outputs not committed). Read
    only: copy it with ``project_copy``. Under pytest-xdist the workers build it once."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return _build(repo_root, tmp_path_factory.mktemp("reproduced") / "repo")
    shared = tmp_path_factory.getbasetemp().parent / "reproduced"  # common to the workers
    with FileLock(str(shared) + ".lock"):
        done = shared / "done"
        if not done.exists():
            _build(repo_root, shared / "repo")
            done.touch()
    return shared / "repo"


@pytest.fixture(scope="module")
def project_copy(reproduced, tmp_path_factory):
    """Make a private copy of the reproduced tiny project: ``project_copy("name")``."""
    def make(name: str) -> Path:
        return copy_project(reproduced, tmp_path_factory.mktemp(name) / "repo")
    return make
