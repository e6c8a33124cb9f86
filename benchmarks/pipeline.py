"""Wall time of a cold default `dvc repro` and of a no-op `dvc repro` right after it.

Copies the tracked pipeline (dvc.yaml, params.yaml, src/, stages/) into a fresh temporary
git + DVC repo with an empty cache, so "cold" means: generate the data, extract features,
train every model, evaluate, analyse and report, as on a fresh clone after installation.

    python benchmarks/pipeline.py            # default params (the README's `make pipeline`)
    python benchmarks/pipeline.py --keep     # keep the temporary repo to look at

Prints one line per phase and, last, the cold/no-op ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ["dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore", "src", "stages"]


def _run(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(cwd / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary repository")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="audiotag-bench-"))
    try:
        for name in COPY:
            src = ROOT / name
            copy = shutil.copytree if src.is_dir() else shutil.copy2
            copy(src, work / name)
        for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"],
                    ["dvc", "config", "core.analytics", "false"], ["git", "add", "-A"],
                    ["git", "commit", "-qm", "bench"]):
            _run(cmd, work)
        cold = _run(["dvc", "repro"], work)
        print(f"cold dvc repro (default params, {os.cpu_count()} cores): {cold:8.1f} s")
        noop = _run(["dvc", "repro"], work)
        print(f"no-op dvc repro:                                  {noop:8.1f} s")
        print(f"cold / no-op ratio: {cold / noop:.0f}x")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
