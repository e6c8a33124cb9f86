"""Self-describing checkpoints: weights plus everything needed to rebuild the model."""

from __future__ import annotations

import os
from typing import Any

import torch

from audiotag.core.io import atomic_path
from audiotag.models import create_model


def save_checkpoint(path: str | os.PathLike[str], model: torch.nn.Module,
                    meta: dict[str, Any]) -> None:
    """``meta`` must hold model_name, model_params, num_classes, n_mels (plain types only)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, **meta}, tmp)


def load_checkpoint(path: str | os.PathLike[str],
                    device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint describes; returns ``(model in eval mode, meta)``."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    state = ckpt.pop("state_dict")
    model = create_model(ckpt["model_name"], num_classes=ckpt["num_classes"],
                         n_mels=ckpt["n_mels"], **ckpt["model_params"])
    model.load_state_dict(state)
    return model.to(device).eval(), ckpt
