"""Seeding, parameter counts and per-layer gradient norms and update ratios."""

from __future__ import annotations

import os
import random
from collections import defaultdict

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch and ask torch for deterministic kernels; returns a
    generator for DataLoader shuffling.

    Same seed + same params on the CPU -> the same bits, run after run and (with the CPU
    kernels pinned, :mod:`audiotag.core.platform`) machine after machine. On one GPU model
    and driver: the same bits run after run where torch has deterministic kernels (it warns
    where it has none); other GPU models differ (docs/reproducibility.md).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False  # the same convolution algorithm every run
    # full float32 on Ampere and newer: TF32 (cuDNN's default for convolutions) rounds
    # inputs to 10 bits, which older GPUs and the CPU do not
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def layer_names(model: torch.nn.Module) -> list[str]:
    """Names of the modules that own parameters directly, in registration order."""
    return [name for name, module in model.named_modules()
            if any(True for _ in module.parameters(recurse=False))]


def _layer(param_name: str) -> str:
    return param_name.rsplit(".", 1)[0] if "." in param_name else param_name


def grad_norms(model: torch.nn.Module) -> dict[str, float]:
    """L2 norm of the gradient of each layer (all its own parameters together)."""
    sq: dict[str, float] = defaultdict(float)
    for name, param in model.named_parameters():
        if param.grad is not None:
            sq[_layer(name)] += float(param.grad.detach().pow(2).sum())
    return {layer: value**0.5 for layer, value in sq.items()}


def update_ratios(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per layer ``|W_after - W_before| / |W_before|`` (L2 over the layer's own parameters)
    for the parameters in ``before`` (a copy taken just before ``optimizer.step()``)."""
    delta: dict[str, float] = defaultdict(float)
    size: dict[str, float] = defaultdict(float)
    for name, param in model.named_parameters():
        if name in before:
            old = before[name]
            delta[_layer(name)] += float((param.detach() - old).pow(2).sum())
            size[_layer(name)] += float(old.pow(2).sum())
    return {layer: (delta[layer] / max(size[layer], 1e-24)) ** 0.5 for layer in delta}


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
