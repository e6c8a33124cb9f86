"""audiotag: a reproducible DVC pipeline for audio tagging and classification experiments.

Importing the package pins the CPU kernels' instruction set (AVX2 on x86-64) before torch
loads, so that the same params give the same bits on every machine: the one thing done at
import, because it must come before torch's first use (:mod:`audiotag.core.platform`).
"""

from audiotag.core.platform import pin_cpu_kernels

pin_cpu_kernels()

__version__ = "0.1.0"
