"""No import runs from a lower layer of the package back up to a higher one.

Every ``audiotag`` import counts, lazy ones inside functions too (a lazy import is still a
dependency, only a hidden one): ``core`` imports no other subpackage, ``metrics`` stays
pure (no training, models or evaluation), and so on up to the top-level modules.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "audiotag"

# lower layers first; a package may import its own modules and any lower layer
LAYERS: list[set[str]] = [
    {"core"},
    {"contracts"},   # what crosses stage boundaries: torch-free, core only below it
    {"data", "metrics", "plots", "models"},
    {"features"},
    {"training"},
    {"cleaning", "evaluation", "analysis", "windows", "model_file"},
    {"params_check", "params_doc", "predict", "export", "tune", "compare"},
    {"cli"},
    {"__main__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _part(path: Path) -> str:
    """``audiotag/training/loop.py`` -> ``training``; ``audiotag/tune.py`` -> ``tune``."""
    rel = path.relative_to(SRC).parts
    return rel[0] if len(rel) > 1 else Path(rel[0]).stem


def _imports(path: Path) -> set[str]:
    """The ``audiotag`` parts one file imports (``import``, ``from ... import``, any depth)."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] if not node.level else []
            if node.level:  # relative: resolve against the file's package
                base = list(path.relative_to(SRC.parent).with_suffix("").parts[:-node.level])
                names = [".".join([*base, node.module] if node.module else base)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            bits = name.split(".")
            if bits[0] == "audiotag" and len(bits) > 1:
                parts.add(bits[1])
    return parts


FILES = sorted(SRC.rglob("*.py"))


def test_every_part_has_a_layer():
    parts = {_part(path) for path in FILES if path.name != "__init__.py" or
             path.parent != SRC}
    assert parts <= set(LAYER), f"give these a layer in LAYERS: {sorted(parts - set(LAYER))}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_import_runs_upward(path):
    if path.parent == SRC and path.name == "__init__.py":
        return
    own = _part(path)
    upward = sorted(p for p in _imports(path) - {own}
                    if p in LAYER and LAYER[p] >= LAYER[own])
    assert not upward, (f"{path.relative_to(SRC.parent)} (layer {LAYER[own]}: {own}) imports "
                        f"{upward}, which are not below it")


def test_the_check_sees_lazy_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "audiotag" / "metrics"
    pkg.mkdir(parents=True)
    mod = pkg / "x.py"
    mod.write_text("def f():\n    from audiotag.training import loop\n"
                   "from ..models import y\nimport audiotag.core.io\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path / "audiotag")
    assert _imports(mod) == {"training", "models", "core"}
