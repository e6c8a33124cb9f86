"""Where torch runs: the device (``auto`` picks one; on a machine with several GPUs each
process claims a free one), the CPU threads of a process and the platform record a result
keeps."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# where the per-GPU lock files live: one directory per machine, shared by every clone,
# queue worker and tuning worker on it (AUDIOTAG_GPU_LOCKS overrides it)
GPU_LOCKS_ENV = "AUDIOTAG_GPU_LOCKS"
_claimed: tuple[int, int | None] | None = None  # this process's GPU, its lock's descriptor


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(choice: str, key: str = "train.device") -> torch.device:
    """``auto`` -> CUDA, else Apple's MPS, else CPU; asking for a missing one is an error
    that names the params ``key``."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{key} is 'cuda' but no CUDA device is available")
    if choice == "mps" and not _mps_available():
        raise RuntimeError(f"{key} is 'mps' but no Apple MPS device is available")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if choice == "cuda" and "LOCAL_RANK" not in os.environ:  # torchrun: one GPU per rank
        return torch.device("cuda", claim_gpu())
    return torch.device(choice)


def visible_gpus() -> list[str]:
    """The machine-wide names of the GPUs this process sees, in torch's order:
    ``CUDA_VISIBLE_DEVICES``'s entries (indices or UUIDs) when set, else ``0..n-1``."""
    count = torch.cuda.device_count()
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        return [str(i) for i in range(count)]
    return [name.strip() for name in listed.split(",") if name.strip()][:count]


def gpu_lock_dir() -> Path:
    return Path(os.environ.get(GPU_LOCKS_ENV) or Path(tempfile.gettempdir()) / "audiotag-gpus")


def claim_gpu() -> int:
    """This process's CUDA device index: with one GPU, 0; with several, the first one no
    other audiotag process on the machine holds (an exclusive ``flock`` on
    ``<lock dir>/gpu-<name>.lock``, held until the process ends, so ``dvc queue start -j 2``
    or two tuning workers train on two GPUs). When every GPU is held, the processes share
    them round-robin by process id. The choice changes where a run computes, never what:
    results are the same bits on any GPU of one model."""
    global _claimed
    if _claimed is not None:
        return _claimed[0]
    names = visible_gpus()
    if len(names) <= 1:
        return 0
    locks = gpu_lock_dir()
    if not locks.is_dir():
        locks.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):  # like /tmp: every user's runs share it
            os.chmod(locks, 0o1777)
    for index, name in enumerate(names):
        try:  # read-only is enough for flock, so another user's lock file will do
            handle = os.open(locks / f"gpu-{name}.lock", os.O_RDONLY | os.O_CREAT, 0o666)
        except OSError as err:
            log.warning("GPU %s: cannot open its lock file (%s); not claiming it", name, err)
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(handle)
            continue
        _claimed = (index, handle)
        break
    else:
        index = os.getpid() % len(names)
        log.info("all %d GPUs are held by other audiotag processes; sharing cuda:%d",
                 len(names), index)
        _claimed = (index, None)
    torch.cuda.set_device(_claimed[0])
    return _claimed[0]


def set_threads(threads: int) -> None:
    """``train.threads``: torch's CPU threads for this process (0 leaves torch's default).

    Small models gain little from a second thread, and on a busy machine an OpenMP thread
    that waits for a core makes every step wait (measured on 2 loaded cores: one epoch of
    cnn1d 1.6 s on 1 thread, 8.2 s on 2)."""
    if threads:
        torch.set_num_threads(threads)


def platform_record(device: torch.device) -> dict[str, str]:
    """Where a result was computed, kept beside it: torch's version, the device (a GPU's
    model name), the CPU kernels' instruction set (``AVX2`` when pinned, the default:
    :mod:`audiotag.core.platform`). The same on every machine whose results are the same
    bits, so it may sit inside results."""
    name = device.type  # not the index: which GPU of a machine ran it changes nothing
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return {"torch": torch.__version__.split("+")[0], "device": name,
            "cpu_kernels": torch.backends.cpu.get_cpu_capability()}
