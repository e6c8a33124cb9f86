"""Self-describing checkpoints: weights plus everything needed to rebuild the model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.contracts.models import current_name
from audiotag.core.io import atomic_path
from audiotag.models import MODELS, create_model, validate_model_params


def save_torch(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` atomically and byte-reproducibly: the same ``obj`` gives the same bytes.

    Given a file name, torch names the zip archive's records after it (``<stem>/data.pkl``),
    and the file written here has a random temporary name; given an open file it names them
    ``archive/``, so the bytes depend on the content only (no timestamps: torch writes none).
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def save_checkpoint(path: str | os.PathLike[str], model: torch.nn.Module,
                    meta: CheckpointMeta | Mapping[str, Any]) -> None:
    """``model``'s weights and ``meta`` (a dict is read as :class:`CheckpointMeta`: it must
    hold model_name, model_params, num_classes (outputs), n_mels; plain types only)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_state_dict(path, state, meta)


def save_state_dict(path: str | os.PathLike[str], state: dict[str, torch.Tensor],
                    meta: CheckpointMeta | Mapping[str, Any]) -> None:
    """:func:`save_checkpoint` of weights already taken from a model.

    ``model_params`` is saved complete (every key of the model's config, defaults filled
    in), so the checkpoint rebuilds the same network when a later version changes a default.
    """
    if not isinstance(meta, CheckpointMeta):
        meta = CheckpointMeta.from_dict(meta)
    if isinstance(meta.model_params, dict) and meta.model_name in MODELS.names():
        params = validate_model_params(meta.model_name, meta.model_params)
        meta = replace(meta, model_params=params.model_dump(mode="json"))
    save_torch({"state_dict": state, **meta.to_dict()}, path)


def load_checkpoint(path: str | os.PathLike[str],
                    device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CheckpointMeta]:
    """Rebuild the model a checkpoint describes; returns ``(model in eval mode, meta)``."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    state = ckpt.pop("state_dict")
    meta = CheckpointMeta.from_dict(ckpt)
    params = dict(meta.model_params)
    if params.get("pretrained_weights"):  # the checkpoint holds the trained weights already
        params["pretrained_weights"] = None
    name, params = current_name(meta.model_name, params)  # a renamed model: today's name
    # a key added to a model's config later: a checkpoint saved before it existed was built
    # without it (checkpoints saved since hold every key)
    for key, value in getattr(MODELS.get(name).config, "ABSENT_IN_OLD_CHECKPOINTS", {}).items():
        params.setdefault(key, value)
    model = create_model(name, num_classes=meta.num_classes, n_mels=meta.n_mels, **params)
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def load_compatible(model: torch.nn.Module, path: str | os.PathLike[str],
                    freeze: bool = False, rename: dict[str, str] | None = None,
                    where: str = "train.init_from") -> tuple[list[str], list[str]]:
    """Transfer learning: copy into ``model`` every tensor of the checkpoint at ``path``
    whose name and shape match (a classifier head for another class count does not);
    ``freeze`` stops training the loaded parameters. Returns ``(loaded, skipped)`` names.

    ``rename`` (source prefix -> this model's prefix) loads one branch of a model from
    another model's layers: only the checkpoint's tensors under a source prefix count,
    renamed (e.g. ``{"features.": "spec_blocks."}``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{where}: no checkpoint file {path!r}")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    source = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(source, dict):
        raise ValueError(f"{where}: {path!r} holds no state_dict")
    if rename is not None:
        source = {new + k.removeprefix(old): v for k, v in source.items()
                  for old, new in rename.items() if k.startswith(old)}
    own = model.state_dict()
    loaded = [k for k, v in source.items()
              if k in own and hasattr(v, "shape") and v.shape == own[k].shape]
    skipped = [k for k in own if k not in loaded]
    if not loaded:
        raise ValueError(f"{where}: no tensor of {path!r} fits this model (was it "
                         f"trained as {ckpt.get('model_name', 'another model')!r}?)")
    model.load_state_dict({**own, **{k: source[k] for k in loaded}})
    if freeze:
        names = set(loaded)
        for name, param in model.named_parameters():
            if name in names:
                param.requires_grad_(False)
    return loaded, skipped
