"""The light stages never load torch: their scripts import only the torch-free layer
(:mod:`audiotag.contracts`), configs and plain metrics, so a tiny `dvc repro` is not
seconds of torch start-up per stage (docs/benchmarks.md, benchmarks/startup.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIGHT_STAGES = ("check_params", "explore", "ensemble", "cv", "report")

# run the script as dvc does (`python stages/<name>.py`), up to argparse: every module-level
# import and main()'s own imports happen; --help stops it before any work
PROBE = """
import runpy, sys
sys.argv = [{script!r}, "--help"]
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit:
    pass
heavy = sorted(m for m in ("torch", "torchaudio", "torchvision") if m in sys.modules)
print("loaded:", ",".join(heavy))
"""


def _heavy_modules(script: Path) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE.format(script=str(script))],
                          capture_output=True, text=True, cwd=ROOT, check=True, timeout=120)
    return done.stdout.strip().splitlines()[-1].removeprefix("loaded:").strip()


@pytest.mark.parametrize("stage", LIGHT_STAGES)
def test_light_stage_does_not_import_torch(stage):
    assert _heavy_modules(ROOT / "stages" / f"{stage}.py") == "", (
        f"stages/{stage}.py imports torch: import what it needs from audiotag.contracts")


def test_the_probe_sees_torch_where_a_stage_loads_it():
    assert "torch" in _heavy_modules(ROOT / "stages" / "evaluate.py")
