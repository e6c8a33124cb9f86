"""DistributedDataParallel through the train stage: ``train.processes: 2`` re-launches the
stage with torchrun, two CPU processes train replicas over the gloo backend, process 0
writes the outputs."""

import json
import os
import subprocess
import sys

import pytest
import yaml
from helpers import write_tone_dataset

from audiotag.data.config import SplitConfig
from audiotag.data.manifest import read_manifest
from audiotag.features.config import FeaturesConfig
from audiotag.features.store import extract_features
from audiotag.training.checkpoint import load_checkpoint

FEATURES = FeaturesConfig(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, fmin=50,
                          fmax=4000, clip_seconds=1.0, eval_crops="center")
pytestmark = pytest.mark.e2e  # torchrun starts two training processes


def _stage(repo_root, tmp_path, processes: int, out: str):
    params = {"seed": 3,
              "train": {"models": ["cnn1d"], "epochs": 3, "batch_size": 8, "lr": 0.01,
                        "device": "cpu", "processes": processes},
              "models": {"cnn1d": {"channels": [16, 16]}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(repo_root / "stages/train.py"), "--model", "cnn1d",
           "--features", str(tmp_path / "features"), "--out", str(tmp_path / out / "model"),
           "--live", str(tmp_path / out / "live"), "--params", str(tmp_path / "params.yaml")]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


def test_two_gloo_processes_train_one_model(repo_root, tmp_path):
    write_tone_dataset(tmp_path / "raw", counts=(("curated", 24), ("noisy", 16), ("test", 6)))
    manifest, classes = read_manifest(tmp_path / "raw")
    extract_features(manifest, classes, tmp_path / "raw", tmp_path / "features", FEATURES,
                     SplitConfig(valid_fold=0))
    done = _stage(repo_root, tmp_path, 2, "ddp")
    assert done.returncode == 0, done.stderr[-3000:]
    log = done.stderr
    assert "process 1 of 2" in log and "process 2 of 2" in log  # two replicas ran
    model, meta = load_checkpoint(tmp_path / "ddp/model/model.pt")
    assert meta["processes"] == 2 and meta["classes"] == classes
    history = json.loads((tmp_path / "ddp/model/history.json").read_text())["epochs"]
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    # one writer: the dvclive log has each epoch once
    rows = (tmp_path / "ddp/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(rows) == 1 + 3


def test_batch_smaller_than_processes_is_a_params_error(repo_root, tmp_path):
    params = {"train": {"models": ["cnn1d"], "batch_size": 1, "processes": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    done = subprocess.run([sys.executable, str(repo_root / "stages/train.py"), "--model",
                           "cnn1d", "--features", "f", "--out", "o", "--live", "l",
                           "--params", "params.yaml"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "train.processes" not in done.stdout
    assert "batch_size (1) is the global batch" in done.stderr
