"""Where torch runs: the device (``auto`` picks one), the CPU threads of a process and the
platform record a result keeps."""

from __future__ import annotations

import torch


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
    return torch.device(choice)


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
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return {"torch": torch.__version__.split("+")[0], "device": name,
            "cpu_kernels": torch.backends.cpu.get_cpu_capability()}
