"""pyproject.toml declares what the code imports, and the licence it names is in the repo."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

# import name -> distribution name, where they differ
DISTRIBUTION = {"yaml": "pyyaml", "sklearn": "scikit-learn", "PIL": "pillow",
                "vl_convert": "vl-convert-python"}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].strip().lower() for req in requirements}


def _third_party_imports(src: Path) -> dict[str, str]:
    """Top-level third-party module -> one file importing it (lazy imports included)."""
    found: dict[str, str] = {}
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top != "audiotag":
                    found.setdefault(top, str(path.relative_to(src.parent)))
    return found


def test_every_imported_package_is_declared(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    declared = _requirement_names(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        declared |= _requirement_names(extra)
    missing = {DISTRIBUTION.get(name, name).lower(): where
               for name, where in _third_party_imports(repo_root / "src").items()
               if DISTRIBUTION.get(name, name).lower() not in declared}
    assert not missing, f"declare in pyproject.toml: {missing}"


def test_optional_features_have_extras_and_dev_installs_them(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    extras = {name: _requirement_names(reqs)
              for name, reqs in project["optional-dependencies"].items()}
    assert "dvc-s3" in extras["s3"] and "optuna" in extras["tune"]
    for name in ("s3", "tune", "onnx"):
        assert extras[name] <= extras["dev"], f"make install (.[dev]) lacks the {name} extra"


def test_the_licence_is_in_the_repo(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    text = (repo_root / "LICENSE").read_text()
    assert text.startswith("MIT License") and "audiotag contributors" in text
