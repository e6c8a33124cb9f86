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
# the same project with epochs: per epoch a validation lwlrap line where train@ writes it
# (audiotag.tune.CURVE, model "m"), EPOCH_S seconds apart; lr >= 0.05 is the bad region.
# HANG_ONCE: the first run to get here hangs (a worker machine that went silent)
EPOCHS_TRAIN = '''\
import json, os, time
from pathlib import Path
import yaml
train = yaml.safe_load(Path("params.yaml").read_text())["train"]
lr = train["lr"]
hang_once = os.environ.get("HANG_ONCE")
if hang_once:
    try:
        os.close(os.open(hang_once, os.O_CREAT | os.O_EXCL))
        time.sleep(3600)
    except FileExistsError:
        pass
curve = Path("metrics/train/m/plots/metrics/valid")
curve.mkdir(parents=True, exist_ok=True)
lines = "step\\tlwlrap\\n"
for epoch in range(1, train["epochs"] + 1):
    value = 0.1 if lr >= 0.05 else 0.5 + 0.05 * epoch - lr
    lines += f"{epoch}\\t{value}\\n"
    (curve / "lwlrap.tsv").write_text(lines)
    time.sleep(float(os.environ.get("EPOCH_S", "0")))
Path("model").mkdir(exist_ok=True)
Path("model/weights.txt").write_text(repr(lr))
Path("metrics.json").write_text(json.dumps({"score": value}))
'''
DVC_YAML = {"stages": {"train": {"cmd": "python train.py", "deps": ["train.py"],
                                 "params": ["train.lr"], "outs": ["model"],
                                 "metrics": [{"metrics.json": {"cache": False}}]}}}


def make_origin(base: Path, remote: list[list[str]], train: str = TRAIN,
                params: dict | None = None, dvc_yaml: dict | None = None) -> Path:
    """``base/origin.git``: a bare git remote holding the project; ``remote``: the
    ``dvc remote ...`` commands (without ``dvc``) that set up its DVC remote; ``train``:
    its train.py, ``params``: its params.yaml (default ``train.lr: 0.01``), ``dvc_yaml``:
    its pipeline (default: the one train stage)."""
    seed = base / "seed"
    seed.mkdir()
    (seed / "train.py").write_text(train)
    (seed / "params.yaml").write_text(yaml.safe_dump(params or {"train": {"lr": 0.01}}))
    (seed / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml or DVC_YAML, sort_keys=False))
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
