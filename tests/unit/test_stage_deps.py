"""Each stage's `deps` in dvc.yaml cover every `audiotag` module its script can import.

The import closure is derived statically (``ast``): ``import a.b``, ``from a import b``
where ``b`` is a submodule, relative imports, and every package ``__init__.py`` on the way
(Python executes them). A library module's imports are those that run when it is imported
(module level, class bodies); the stage script's own imports inside functions count too
(its ``main`` runs). Lazy imports inside library functions are not followed (a stage may
import a module without ever calling the function that loads the model
zoo), nor are ``if TYPE_CHECKING:`` blocks (they never run).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

PACKAGE = "audiotag"


def _module_file(src: Path, module: str) -> Path | None:
    base = src.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: importing a module runs its packages' ``__init__``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _nodes(tree: ast.AST, functions: bool):
    """Every node but those under ``if TYPE_CHECKING:`` (and function bodies unless
    ``functions``)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if not functions and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(path: Path, module: str | None, src: Path) -> set[str]:
    """The ``audiotag`` modules one file imports directly (with their parent packages);
    ``module`` is None for the stage script itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = (module if path.name == "__init__.py" else module.rpartition(".")[0]) \
        if module else ""
    found: set[str] = set()
    for node in _nodes(tree, functions=module is None):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import sub` imports pkg.sub when sub is a module
            names = [base] + [f"{base}.{alias.name}" for alias in node.names
                              if _module_file(src, f"{base}.{alias.name}")]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                found.update(m for m in _with_parents(name) if _module_file(src, m))
    return found


def import_closure(script: Path, src: Path) -> set[Path]:
    """Every ``audiotag`` source file executed (or importable) when ``script`` runs."""
    seen: set[str] = set()
    todo = list(imported_modules(script, None, src))
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(imported_modules(_module_file(src, module), module, src) - seen)
    return {_module_file(src, m) for m in seen}


def _stages(repo_root: Path):
    for name, stage in yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"].items():
        yield name, stage.get("do", stage)


def _covered(rel: str, deps: list[str]) -> bool:
    return any(rel == dep or rel.startswith(dep.rstrip("/") + "/") for dep in deps)


@pytest.mark.parametrize("stage", [name for name, _ in _stages(Path(__file__).parents[2])])
def test_stage_deps_cover_the_import_closure_of_its_script(repo_root, stage):
    body = dict(_stages(repo_root))[stage]
    script = repo_root / re.search(r"python (stages/\w+\.py)", body["cmd"]).group(1)
    deps = [str(dep) for dep in body["deps"]]
    files = import_closure(script, repo_root / "src")
    assert files, f"{stage}: found no audiotag import in {script.name}"
    missing = sorted(str(f.relative_to(repo_root)) for f in files
                     if not _covered(str(f.relative_to(repo_root)), deps))
    assert not missing, f"dvc.yaml stage {stage!r}: add to deps: {missing}"


def test_the_closure_follows_relative_and_submodule_imports(tmp_path):
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import x\n")
    (pkg / "sub" / "a.py").write_text("from ..b import y\n")
    (pkg / "b.py").write_text("import audiotag.c\ndef f():\n    from audiotag import lazy\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from audiotag import d\n")
    (pkg / "d.py").write_text("")
    (pkg / "lazy.py").write_text("")
    (pkg / "e.py").write_text("")
    script = tmp_path / "stage.py"
    script.write_text("from audiotag.sub import a\ndef main():\n    import audiotag.e\n")
    got = {str(p.relative_to(tmp_path)) for p in import_closure(script, tmp_path)}
    assert got == {"audiotag/__init__.py", "audiotag/sub/__init__.py", "audiotag/sub/a.py",
                   "audiotag/b.py", "audiotag/c.py", "audiotag/e.py"}
