"""The CPU kernels' instruction set is pinned before torch loads (issue 29: an AVX-512 and an
AVX2 machine gave other metrics for the same commit and params)."""

from __future__ import annotations

import ast
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from audiotag.core import platform as pin
from audiotag.core.platform import OPT_OUT, PINNED, cpu_isa_choice, pin_cpu_kernels

REPO = Path(__file__).resolve().parents[2]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def test_pinning_sets_what_the_user_has_not(monkeypatch):
    monkeypatch.setattr(pin.platform, "machine", lambda: "x86_64")
    env = {"MKL_CBWR": "COMPATIBLE"}  # exported by hand: kept
    added = pin_cpu_kernels(env)
    assert env == {**PINNED, "MKL_CBWR": "COMPATIBLE"}
    assert added == {k: v for k, v in PINNED.items() if k != "MKL_CBWR"}
    assert pin_cpu_kernels(env) == {}  # twice: nothing more


@pytest.mark.parametrize(("machine", "choice"), [("x86_64", "native"), ("x86_64", "NATIVE"),
                                                 ("aarch64", "avx2"), ("arm64", None)])
def test_nothing_is_pinned_when_opted_out_or_off_x86(monkeypatch, machine, choice):
    monkeypatch.setattr(pin.platform, "machine", lambda: machine)
    env = {} if choice is None else {OPT_OUT: choice}
    assert pin_cpu_kernels(env) == {} and set(env) <= {OPT_OUT}


def test_a_bad_choice_names_the_variable():
    with pytest.raises(ValueError, match=r"AUDIOTAG_CPU_ISA='avx512': expected one of avx2, "):
        cpu_isa_choice({OPT_OUT: "avx512"})
    assert cpu_isa_choice({}) == "avx2" and cpu_isa_choice({OPT_OUT: " "}) == "avx2"


def _capability(env: dict[str, str]) -> str:
    code = "import audiotag, torch; print(torch.backends.cpu.get_cpu_capability())"
    clean = {k: v for k, v in os.environ.items() if k not in PINNED and k != OPT_OUT}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64")
                    or "avx2" not in _cpu_flags(), reason="an x86-64 CPU with AVX2")
def test_importing_the_package_pins_torch_to_avx2():
    """What every stage process does: `import audiotag` before torch. On an AVX-512
    machine the opt-out gives torch's own choice, so the pin is what made the difference."""
    assert _capability({}) == "AVX2"
    native = _capability({OPT_OUT: "native"})
    assert native == ("AVX512" if "avx512f" in _cpu_flags() else "AVX2"), native


def _top_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    return names


@pytest.mark.parametrize("script", sorted((REPO / "stages").glob("*.py")), ids=lambda p: p.name)
def test_every_stage_imports_the_package_before_torch(script):
    roots = [name.split(".")[0] for name in _top_level_imports(script)]
    heavy = [i for i, root in enumerate(roots) if root in ("torch", "torchaudio", "torchvision")]
    first = roots.index("audiotag") if "audiotag" in roots else len(roots)
    assert not heavy or first < heavy[0], f"{script.name}: imports torch before audiotag"
