"""A one-stage DVC project without torch (a train.py writing a model file and a metric
from ``train.lr``) for tests of the team workflow across clones, where each experiment
must take seconds: what is under test is DVC's and the tuner's machinery, not the audio
pipeline (tests/e2e/test_team.py runs that)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from dvc_project import env_for, run

TRAIN = '''\
import json, math, os, sys
from pathlib import Path
import yaml
lr = yaml.safe_load(Path("params.yaml").read_text())["train"]["lr"]
crash_once = os.environ.get("CRASH_ONCE")  # the first run to get here crashes
if crash_once:
    try:
        os.close(os.open(crash_once, os.O_CREAT | os.O_EXCL))
        sys.exit("simulated crash")
    except FileExistsError:
        pass
Path("model").mkdir(exist_ok=True)
Path("model/weights.txt").write_text(repr(lr))
Path("metrics.json").write_text(json.dumps({"score": -abs(math.log10(lr) + 2.5)}))
'''
DVC_YAML = {"stages": {"train": {"cmd": "python train.py", "deps": ["train.py"],
                                 "params": ["train.lr"], "outs": ["model"],
                                 "metrics": [{"metrics.json": {"cache": False}}]}}}


def make_origin(base: Path, remote: list[list[str]]) -> Path:
    """``base/origin.git``: a bare git remote holding the project; ``remote``: the
    ``dvc remote ...`` commands (without ``dvc``) that set up its DVC remote."""
    seed = base / "seed"
    seed.mkdir()
    (seed / "train.py").write_text(TRAIN)
    (seed / "params.yaml").write_text(yaml.safe_dump({"train": {"lr": 0.01}}))
    (seed / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], seed)
    run(["dvc", "init", "-q"], seed)
    run(["dvc", "config", "core.analytics", "false"], seed)
    for args in remote:
        run(["dvc", *args], seed)
    run(["git", "add", "-A"], seed)
    run(["git", "commit", "-qm", "project"], seed)
    run(["git", "init", "-q", "--bare", "-b", "main", str(base / "origin.git")], base)
    run(["git", "push", "-q", str(base / "origin.git"), "main"], seed)
    return base / "origin.git"


def sh(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
       check: bool = True) -> subprocess.CompletedProcess:
    """``args`` in ``cwd`` with the test environment (and ``extra_env``)."""
    done = subprocess.run(args, cwd=cwd, env={**env_for(cwd), **(extra_env or {})},
                          capture_output=True, text=True, timeout=600)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def clone(base: Path, name: str, extra_env: dict[str, str] | None = None) -> Path:
    sh(["git", "clone", "-q", str(base / "origin.git"), name], base, extra_env)
    return base / name
