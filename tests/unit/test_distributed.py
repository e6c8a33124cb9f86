"""The DDP options that need no second process: SyncBatchNorm, torchrun's restarts and the
checks on a multi-process config (parsed here; tests/e2e/test_ddp.py runs processes)."""

from __future__ import annotations

import pytest
import torch

from audiotag.core.errors import ParamsError
from audiotag.models import create_model
from audiotag.training.config import TrainConfig
from audiotag.training.distributed import sync_batchnorm, torchrun_args


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(models=["cnn2d"], batch_size=16, **kw)


def test_torchrun_restarts_a_failed_job_when_asked():
    two = _cfg(processes=2, max_restarts=3)  # parsed, not run
    assert torchrun_args(two, "cnn2d") == ["--standalone", "--nproc-per-node=2",
                                           "--max-restarts=3"]
    nodes = _cfg(processes=2, nodes=2, rdzv_endpoint="h:29400", max_restarts=1)  # parsed, not run
    assert torchrun_args(nodes, "cnn2d")[-1] == "--max-restarts=1"
    one_try = _cfg(processes=2)  # parsed, not run
    assert not any("restarts" in a for a in torchrun_args(one_try, "x"))


def test_sync_batchnorm_and_restarts_need_several_processes():
    with pytest.raises(ValueError, match="sync_batchnorm and max_restarts act on a "
                                         "multi-process run"):
        _cfg(sync_batchnorm=True)
    with pytest.raises(ValueError, match="multi-process run"):
        _cfg(max_restarts=2)


BATCHNORM = torch.nn.modules.batchnorm._BatchNorm


def test_sync_batchnorm_swaps_every_batchnorm_and_keeps_the_checkpoint_keys():
    model = create_model("cnn2d", num_classes=5, n_mels=32)
    kinds = [type(m) for m in model.modules() if isinstance(m, BATCHNORM)]
    assert kinds and torch.nn.SyncBatchNorm not in kinds
    keys = set(model.state_dict())
    assert sync_batchnorm(model, False, torch.device("cuda", 0)) is model  # off: unchanged
    synced = sync_batchnorm(model, True, torch.device("cuda", 0))  # faked: built on the CPU
    swapped = [m for m in synced.modules() if isinstance(m, BATCHNORM)]
    assert len(swapped) == len(kinds) and all(type(m) is torch.nn.SyncBatchNorm for m in swapped)
    assert set(synced.state_dict()) == keys  # model.pt loads into the one-process model
    with pytest.raises(ParamsError, match=r"train\.sync_batchnorm: .*CUDA only .*on cpu"):
        sync_batchnorm(model, True, torch.device("cpu"))
