"""The test suite's split: tests/unit/ runs in seconds per test (`make test-fast`),
tests/e2e/ holds every test that drives the real `dvc` CLI or launches training processes
(marked e2e), and no test file sits outside the two."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
UNIT = sorted((TESTS / "unit").glob("test_*.py"))
E2E = sorted((TESTS / "e2e").glob("test_*.py"))
# a subprocess that starts one of these is end to end: the dvc CLI, torchrun, a browser
HEAVY_COMMANDS = {"dvc", "torchrun", "chromium"}
SHARED_PROJECT = "dvc_project"  # tests/dvc_project.py: the copied project and the dvc driver


def _marks_e2e(tree: ast.Module) -> bool:
    """``pytestmark = pytest.mark.e2e`` (alone or in a list) at module level."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            if "pytest.mark.e2e" in ast.unparse(node.value):
                return True
    return False


PARSE_ONLY = "# parsed, not run"  # a line that only checks a config's validation


def _heavy_uses(tree: ast.Module, lines: list[str] | None = None) -> list[str]:
    """What in a module drives the dvc CLI or a multi-process run: an import of the shared
    dvc project module, a command list starting with a heavy command, or a
    `train.processes` above 1 (unless its line says it is only parsed: ``PARSE_ONLY``)."""
    lines = lines or []
    found = []
    compared = {id(n) for c in ast.walk(tree) if isinstance(c, ast.Compare)
                for n in (c.left, *c.comparators)}  # `argv[:3] == ["dvc", ...]` runs nothing
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == SHARED_PROJECT or \
                isinstance(node, ast.Import) and any(a.name == SHARED_PROJECT for a in node.names):
            found.append(f"imports {SHARED_PROJECT}")
        if isinstance(node, (ast.List, ast.Tuple)) and id(node) not in compared and node.elts and \
                isinstance(node.elts[0], ast.Constant) and node.elts[0].value in HEAVY_COMMANDS:
            found.append(f"runs {node.elts[0].value} (line {node.lineno})")
        if isinstance(node, ast.Dict):
            for key in node.keys:
                if isinstance(key, ast.Constant) and key.value == "processes" and \
                        PARSE_ONLY not in (lines[node.lineno - 1] if lines else ""):
                    found.append(f"sets train.processes (line {node.lineno})")
    return found


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_every_test_file_is_unit_or_e2e():
    loose = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert not loose, f"move these into tests/unit/ or tests/e2e/: {loose}"
    assert UNIT and E2E


@pytest.mark.parametrize("path", E2E, ids=lambda p: p.name)
def test_end_to_end_files_carry_the_e2e_mark(path):
    assert _marks_e2e(_tree(path)), f"{path.name}: add `pytestmark = pytest.mark.e2e`"


@pytest.mark.parametrize("path", UNIT, ids=lambda p: p.name)
def test_unit_files_do_not_drive_dvc_or_processes(path):
    tree, lines = _tree(path), path.read_text(encoding="utf-8").splitlines()
    assert not _marks_e2e(tree), f"{path.name} is marked e2e: move it to tests/e2e/"
    heavy = _heavy_uses(tree, lines)
    assert not heavy, f"{path.name}: {heavy}; move it to tests/e2e/"


def test_the_check_sees_what_it_looks_for():
    heavy = ast.parse('from dvc_project import run\nrun(["dvc", "repro"], root)\n'
                      'params = {"train": {"processes": 2}}\n')
    assert len(_heavy_uses(heavy)) == 3
    parsed = 'params = {"train": {"processes": 2}}  # parsed, not run\n'
    assert not _heavy_uses(ast.parse(parsed), parsed.splitlines())
    assert not _heavy_uses(ast.parse('run(["git", "init"], root)\nx = {"dvc": 1}\n'
                                     'ok = argv[:2] == ["dvc", "exp"]\n'))
    assert _marks_e2e(ast.parse("import pytest\npytestmark = [pytest.mark.e2e]\n"))
    assert not _marks_e2e(ast.parse("import pytest\npytestmark = pytest.mark.slow\n"))


def _recipe(target: str) -> str:
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)+)", text, flags=re.M)
    assert match, f"Makefile has no `{target}` target"
    return match.group(1)


def test_make_test_fast_runs_the_unit_tests_only_and_make_test_everything():
    fast = _recipe("test-fast")
    assert "pytest" in fast and "tests/unit" in fast and "not e2e and not slow" in fast
    full = _recipe("test")
    # everything but the `docs` marker (the whole experiments page: make test-docs)
    assert "pytest" in full and "tests/unit" not in full
    assert re.findall(r'-m "[^"]*"', full) == ['-m "not docs"']
    assert "-m docs" in _recipe("test-docs")


def test_only_the_full_experiments_page_is_left_to_make_test_docs():
    marked = [path.relative_to(ROOT).as_posix()
              for path in (ROOT / "tests").rglob("test_*.py")
              if "@pytest.mark.docs" in path.read_text() and path.name != Path(__file__).name]
    assert marked == ["tests/e2e/test_experiments_doc.py"]
    assert (ROOT / "tests/e2e/test_experiments_doc.py").read_text().count("@pytest.mark.docs") == 1
