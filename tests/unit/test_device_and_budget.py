"""Issue 34 item 10: `train.device: mps` with Apple's MPS faked (as the CUDA paths are
tested without a GPU), and the inference budget that benchmarks/predict.py reports
(its arithmetic, not a timing)."""

from __future__ import annotations

import importlib

import pytest
import torch

from audiotag.core import device as device_module
from audiotag.core.device import pick_device, platform_record
from audiotag.core.params import read_params
from audiotag.training.config import parse_train
from audiotag.training.recipe import _loader


@pytest.fixture()
def mps(monkeypatch):
    """A machine with Apple's MPS and no CUDA (the flag is what torch.backends.mps says)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)


def test_train_device_mps_is_a_valid_setting(repo_root):
    raw = read_params(repo_root / "params.yaml")
    raw["train"]["device"] = "mps"
    assert parse_train(raw).device == "mps"


def test_mps_is_used_when_asked_and_picked_by_auto_without_cuda(mps):
    assert pick_device("mps") == torch.device("mps")
    assert pick_device("auto") == torch.device("mps")  # after CUDA, before the CPU
    assert platform_record(torch.device("mps"))["device"] == "mps"


def test_a_missing_mps_is_an_error_naming_the_key(monkeypatch):
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"evaluate\.device is 'mps' but no Apple MPS"):
        pick_device("mps", key="evaluate.device")
    assert pick_device("auto") == torch.device("cpu")


def test_a_single_process_training_runs_on_mps(mps, monkeypatch):
    """train@'s device (training.distributed.setup): `mps` without torchrun."""
    from audiotag.training.distributed import setup

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context, device = setup("mps")
    assert device == torch.device("mps") and context.world == 1


def test_batches_are_pinned_for_cuda_only_not_for_mps(mps, repo_root):
    data = list(range(4))
    raw = read_params(repo_root / "params.yaml")
    raw["train"]["pin_memory"] = True
    cfg = parse_train(raw)
    assert not _loader(data, cfg, device=torch.device("mps")).pin_memory
    assert _loader(data, cfg, device=torch.device("cuda")).pin_memory


@pytest.fixture()
def bench(monkeypatch, repo_root):
    monkeypatch.syspath_prepend(str(repo_root / "benchmarks"))
    return importlib.import_module("predict")


def test_inference_budget_is_the_audio_tagged_in_120_minutes(bench):
    """50 clips, 100 s of audio, tagged in 10 s of wall time and 5 s of CPU time: 10x real
    time, so 20 hours of audio fit the English log's 2-hour inference limit."""
    figures = bench.budget_figures(50, audio_s=100.0, wall=10.0, cpu=5.0)
    assert figures == pytest.approx({"clips/s": 5.0, "x real time": 10.0, "CPU ms/clip": 100.0,
                                     "audio hours in budget": 20.0})
    assert bench.BUDGET_HOURS == 2.0
    half = bench.budget_figures(50, audio_s=100.0, wall=10.0, cpu=5.0, budget_hours=1.0)
    assert half["audio hours in budget"] == pytest.approx(10.0)
