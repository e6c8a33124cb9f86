"""Multi-process training with DistributedDataParallel (``train.processes > 1``).

The train stage re-launches itself through ``torch.distributed.run`` (torchrun) with
``train.processes`` processes; each process trains one replica on its share of every batch
(``DistributedSampler``; ``train.batch_size`` stays the global batch) and DDP averages the
gradients, so the replicas stay identical. Backend: NCCL on CUDA (one GPU per process,
``cuda:<LOCAL_RANK>``), gloo on the CPU. Every process validates the whole validation set
with the same weights; process 0 alone logs, checkpoints and writes the outputs.
With ``train.nodes > 1`` every node runs the stage, and torchrun's c10d rendezvous at
``train.rdzv_endpoint`` groups the nodes' processes into one job (ranks 0..nodes*processes-1);
the process of rank 0, on whichever node, writes the outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from audiotag.core.device import pick_device
from audiotag.core.errors import ParamsError

if TYPE_CHECKING:
    from audiotag.training.config import TrainConfig


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def torchrun_args(cfg: TrainConfig, model: str) -> list[str]:
    """torchrun's options for ``train.processes`` per node on ``train.nodes`` nodes: one
    node is ``--standalone``; several meet at the c10d rendezvous ``train.rdzv_endpoint``
    under an id per model, so train@a and train@b never join each other's job."""
    restarts = [f"--max-restarts={cfg.max_restarts}"] if cfg.max_restarts else []
    if cfg.nodes == 1:
        return ["--standalone", f"--nproc-per-node={cfg.processes}", *restarts]
    return [f"--nnodes={cfg.nodes}", f"--nproc-per-node={cfg.processes}",
            "--rdzv-backend=c10d", f"--rdzv-endpoint={cfg.rdzv_endpoint}",
            f"--rdzv-id=audiotag-{model}", *restarts]


def sync_batchnorm(model: torch.nn.Module, enabled: bool,
                   device: torch.device) -> torch.nn.Module:
    """``train.sync_batchnorm``: every BatchNorm layer as a ``SyncBatchNorm``, whose batch
    statistics are computed over all processes' shares of the batch (the global batch, as
    in a one-process run) instead of each process's share. torch runs it on GPUs only.
    The layers keep their parameter and buffer names, so checkpoints load into the
    one-process model."""
    if not enabled:
        return model
    if device.type != "cuda":
        raise ParamsError(f"train.sync_batchnorm: torch's SyncBatchNorm runs on CUDA only "
                          f"(this run is on {device.type}); set it to false")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def setup(device_choice: str) -> tuple[Context, torch.device]:
    """The process group of a torchrun launch (``WORLD_SIZE > 1``) and this process's
    device; a plain ``(Context(), device)`` otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_choice)
    if world <= 1:
        return Context(), device
    rank = int(os.environ["RANK"])
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world), device


def agree(flag: bool, device: torch.device) -> bool:
    """Process 0's ``flag`` in every process (a no-op without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([int(flag)], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def teardown(ctx: Context, wait: bool = True) -> None:
    """Leave the process group; ``wait``: first until every process got here (process 0
    writes the outputs while the others wait)."""
    if ctx.enabled and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
