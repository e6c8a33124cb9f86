"""DistributedDataParallel through the train stage. ``train.processes: 2`` re-launches the
stage with torchrun: two CPU processes train replicas over the gloo backend, process 0
writes the outputs. ``train.nodes: 2`` with torchrun's c10d rendezvous on a loopback
endpoint: two "nodes" of one gloo process each (two launches of the train stage, as two
machines would run it) must train exactly what the 2-process single-node run trains."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from dvc_project import free_port
from helpers import TONE_FEATURES, write_tone_dataset

from audiotag.core.errors import ParamsError
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import read_manifest
from audiotag.features.store import extract_features
from audiotag.training.checkpoint import load_checkpoint
from audiotag.training.config import parse_train
from audiotag.training.distributed import torchrun_args

pytestmark = pytest.mark.e2e  # torchrun processes on loopback
FEATURES = TONE_FEATURES


def _launch(repo_root, tmp_path, out: str, **train):
    params = {"seed": 3,
              "train": {"models": ["cnn1d"], "epochs": 2, "batch_size": 8, "lr": 0.01,
                        "device": "cpu", **train},
              "models": {"cnn1d": {"channels": [16, 16]}}}
    path = tmp_path / f"params-{out}.yaml"
    path.write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(repo_root / "stages/train.py"), "--model", "cnn1d",
           "--features", str(tmp_path / "features"), "--out", str(tmp_path / out / "model"),
           "--live", str(tmp_path / out / "live"), "--params", str(path)]
    return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_two_nodes_train_like_two_processes_on_one_node(repo_root, tmp_path):
    write_tone_dataset(tmp_path / "raw", counts=(("curated", 24), ("noisy", 16), ("test", 6)))
    manifest, classes = read_manifest(tmp_path / "raw")
    extract_features(manifest, classes, tmp_path / "raw", tmp_path / "features", FEATURES,
                     SplitConfig(valid_fold=0))
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [_launch(repo_root, tmp_path, f"node{i}", nodes=2, processes=1,
                     rdzv_endpoint=endpoint) for i in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in nodes]
    for p, log in zip(nodes, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    both = "".join(logs)
    assert "process 1 of 2" in both and "process 2 of 2" in both, both[-3000:]
    # one node held rank 0 and wrote the outputs; the other wrote nothing
    wrote = [i for i in range(2) if (tmp_path / f"node{i}/model/model.pt").exists()]
    assert len(wrote) == 1, wrote
    assert not (tmp_path / f"node{1 - wrote[0]}/live").exists()

    single = _launch(repo_root, tmp_path, "single", processes=2)
    log = single.communicate(timeout=600)[0]
    assert single.returncode == 0, log[-3000:]
    assert "process 1 of 2" in log and "process 2 of 2" in log  # two replicas ran
    _, meta = load_checkpoint(tmp_path / "single/model/model.pt")
    assert meta.processes == 2 and meta.classes == classes
    history = json.loads((tmp_path / "single/model/history.json").read_text())["epochs"]
    assert len(history) == 2 and history[-1]["train_loss"] < history[0]["train_loss"]
    # one writer: the dvclive log has each epoch once
    rows = (tmp_path / "single/live/plots/metrics/train/loss.tsv").read_text().splitlines()
    assert len(rows) == 1 + 2
    multi = _weights(tmp_path / f"node{wrote[0]}/model/model.pt")
    local = _weights(tmp_path / "single/model/model.pt")
    state_m, state_l = multi["state_dict"], local["state_dict"]
    assert state_m.keys() == state_l.keys()
    for key in state_m:
        assert torch.equal(state_m[key], state_l[key]), key


def test_torchrun_arguments_of_one_and_several_nodes():
    one = parse_train({"train": {"models": ["cnn1d"], "processes": 2}})
    assert torchrun_args(one, "cnn1d") == ["--standalone", "--nproc-per-node=2"]
    two = parse_train({"train": {"models": ["cnn1d"], "processes": 4, "nodes": 2,
                                 "rdzv_endpoint": "head:29400"}})
    assert torchrun_args(two, "cnn1d") == [
        "--nnodes=2", "--nproc-per-node=4", "--rdzv-backend=c10d",
        "--rdzv-endpoint=head:29400", "--rdzv-id=audiotag-cnn1d"]
    with pytest.raises(ParamsError, match=r"train.rdzv_endpoint.*host:port"):
        parse_train({"train": {"models": ["cnn1d"], "nodes": 2}})
    with pytest.raises(ParamsError, match=r"batch_size \(4\) is the global batch.*8"):
        parse_train({"train": {"models": ["cnn1d"], "batch_size": 4, "processes": 4,
                               "nodes": 2, "rdzv_endpoint": "head:29400"}})


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
