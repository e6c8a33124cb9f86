"""The CPU kernels' instruction set, pinned before torch loads, so that results are the
same bits on every x86-64 machine (docs/reproducibility.md).

torch picks its kernels by the widest instruction set the CPU has: an AVX-512 machine and
an AVX2 machine sum in other orders, differ in the last bits of a few operations, and
training amplifies that into other metrics. Pinning AVX2 (which every x86-64 CPU since
2013 has) makes them run the same kernels. The settings are environment variables that
torch, oneDNN and MKL read once, when first used: they are set when ``audiotag`` is
imported, before any stage or command of the package imports torch.

``AUDIOTAG_CPU_ISA=native`` opts out (torch's own choice: faster on AVX-512 machines,
results that differ from other machines'). Torch-free: imported by ``audiotag/__init__``.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping

OPT_OUT = "AUDIOTAG_CPU_ISA"  # "avx2" (the default) or "native"
CHOICES = ("avx2", "native")
# With these an AVX-512 machine reproduced an AVX2 machine's outputs bit for bit; on AMD the
# first two were needed and enough, MKL's is for Intel's AVX-512 code path
# (benchmarks/isa_pinning.py; docs/benchmarks.md#pinned-cpu-kernels)
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own vectorised kernels (softmax, exp, reductions)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's convolutions and matmuls
    "MKL_CBWR": "AVX2",  # MKL's BLAS: its AVX2 code path (conditional numerical reproducibility)
}


def _x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def cpu_isa_choice(environ: MutableMapping[str, str] = os.environ) -> str:
    """``AUDIOTAG_CPU_ISA`` as set (``avx2`` when unset); ValueError naming the variable for
    any other value."""
    choice = environ.get(OPT_OUT, "avx2").strip().lower() or "avx2"
    if choice not in CHOICES:
        raise ValueError(f"{OPT_OUT}={environ[OPT_OUT]!r}: expected one of {', '.join(CHOICES)}")
    return choice


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set the :data:`PINNED` variables in ``environ`` (those not set already: a value the
    user exported wins) on x86-64 unless ``AUDIOTAG_CPU_ISA=native``; returns what was set.
    Child processes (DVC's stages, torchrun's workers, DataLoader workers) inherit them."""
    if cpu_isa_choice(environ) == "native" or not _x86_64():
        return {}
    added = {key: value for key, value in PINNED.items() if key not in environ}
    environ.update(added)
    return added
