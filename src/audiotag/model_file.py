"""A ``model.pt`` given by a user (``audiotag predict``, ``audiotag export``): loaded, or
one line naming the file and what is wrong with it (:class:`CheckpointError`).

The training side loads its own checkpoints with
:func:`audiotag.training.checkpoint.load_checkpoint`; this front door adds the checks a
file from anywhere needs (empty, truncated, not torch, an audio file, class list and
weights that disagree) without touching what the pipeline stages depend on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from audiotag.contracts.checkpoint import REQUIRED, CheckpointMeta
from audiotag.training.checkpoint import load_checkpoint

REQUIRED_KEYS = ("state_dict", *REQUIRED)
AUDIO_MAGIC = {b"RIFF": "a WAV (RIFF) audio file", b"fLaC": "a FLAC audio file",
               b"OggS": "an Ogg audio file", b"ID3": "an MP3 audio file"}


class CheckpointError(ValueError):
    """A ``--checkpoint`` that is not a usable audiotag checkpoint (the message says why)."""


def _one_line(err: BaseException, limit: int = 300) -> str:
    """An exception's message on one line (torch's span several), shortened to ``limit``."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _kind_of_bytes(path: Path) -> str | None:
    """What the first bytes say the file is when that rules out a checkpoint, else None."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        return "an empty file (0 bytes)"
    for magic, kind in AUDIO_MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def _read(path: Path) -> dict[str, Any]:
    """The checkpoint's dict, or :class:`CheckpointError` saying why it is not one."""
    kind = _kind_of_bytes(path)
    if kind is not None:
        raise CheckpointError(f"{path}: not a checkpoint: {kind}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types; the first line says enough
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or another "
                              f"format?): {_one_line(err)}") from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not an audiotag checkpoint: it holds a "
                              f"{type(ckpt).__name__}, not a dict of weights and settings")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path}: not an audiotag checkpoint (made by train@): missing "
                              f"{', '.join(missing)}")
    return ckpt


def open_checkpoint(path: str | os.PathLike[str],
                    device: str | torch.device = "cpu") -> tuple[torch.nn.Module, CheckpointMeta]:
    """:func:`load_checkpoint` of a user's file: ``(model in eval mode, meta)``.

    Raises FileNotFoundError for a missing file and :class:`CheckpointError` for one that
    is empty, truncated, not a torch file, an audio file, or whose classes or weights
    disagree with the model it describes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    ckpt = _read(path)
    meta = CheckpointMeta.from_dict(ckpt)
    outputs = len(meta.outputs)
    if outputs != meta.num_classes:
        raise CheckpointError(f"{path}: lists {outputs} classes/targets but its model has "
                              f"{meta.num_classes} outputs")
    try:
        return load_checkpoint(path, device)
    except (RuntimeError, KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: its weights do not fit the model it describes "
                              f"({meta.model_name}, {meta.num_classes} outputs): "
                              f"{_one_line(err)}") from err
