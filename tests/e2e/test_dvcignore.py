"""The repository's .dvcignore keeps Python bytecode out of the stages' dependency hashes:
a real `dvc repro` and `dvc status` on a one-stage project."""

import json
import shutil

import pytest
import yaml
from dvc_project import run

pytestmark = pytest.mark.e2e


def test_python_bytecode_in_a_dependency_does_not_make_stages_stale(repo_root, tmp_path):
    # importing the code (tests, another checkout through the editable install) writes
    # __pycache__ into src/; with the repository's .dvcignore that must not re-run stages,
    # while a real source edit still must
    shutil.copy2(repo_root / ".dvcignore", tmp_path / ".dvcignore")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("X = 1\n")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"s": {
        "cmd": "python -c \"open('out.txt', 'w').write('x')\"",
        "deps": ["pkg"], "outs": ["out.txt"]}}}))
    run(["git", "init", "-q"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    assert "__pycache__/" in (tmp_path / ".dvcignore").read_text()  # not replaced by init
    run(["dvc", "repro", "-q"], tmp_path)

    def stale() -> dict:
        return json.loads(run(["dvc", "status", "--json"], tmp_path).stdout)

    assert stale() == {}
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\x00bytecode")
    (tmp_path / "pkg" / "m.cpython-311.pyc").write_bytes(b"\x00bytecode")
    assert stale() == {}
    (tmp_path / "pkg" / "m.py").write_text("X = 2\n")
    assert "s" in stale()
