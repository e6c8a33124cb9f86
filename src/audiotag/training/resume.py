"""Resume state of an interrupted training run: ``checkpoints/<model>/last.pt``.

After every epoch the train stage saves :meth:`audiotag.training.loop.Trainer.state_dict`
(weights, optimizer, schedule, SWA average, best weights so far, history and every RNG
state) with a *fingerprint* of what the run depends on: the model and its params, the
``train`` params, the seed, the feature store's statistics and index, and the source code
of the ``audiotag`` package (a state saved by other code is never continued). The directory is a
``persist: true`` DVC out, so DVC does not delete it before re-running the stage: a run
killed at epoch 7 of 15 continues at epoch 8 when it is run again, and ends with the same
weights and metrics as an uninterrupted run on the CPU. A state whose fingerprint differs
(params or data changed) is ignored. When training completes, the file is replaced by a
small marker (fingerprint and history, no weights), so it costs the DVC cache nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from audiotag.contracts.store import FEATURES_NAME, INDEX_NAME, STATS_NAME
from audiotag.training.checkpoint import save_torch

log = logging.getLogger(__name__)
STATE_NAME = "last.pt"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def code_digest(root: Path = PACKAGE_ROOT) -> str:
    """A digest of every ``.py`` file under ``root`` (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(file_digest(path).encode())
    return digest.hexdigest()


def fingerprint(model_name: str, model_params: dict[str, Any], train_params: dict[str, Any],
                seed: int, features_dir: Path, code_root: Path = PACKAGE_ROOT) -> str:
    """A digest of everything a training run's result depends on, its code included."""
    parts = {"model": model_name, "model_params": model_params, "train": train_params,
             "seed": seed, "code": code_digest(code_root),
             "features": {name: file_digest(features_dir / name)
                          for name in (FEATURES_NAME, STATS_NAME, INDEX_NAME)
                          if (features_dir / name).exists()}}
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def save_state(directory: str | os.PathLike[str], fp: str, state: dict[str, Any],
               complete: bool = False) -> None:
    """Write ``directory/last.pt`` atomically (a kill never leaves a torn file)."""
    path = Path(directory) / STATE_NAME
    save_torch({"fingerprint": fp, "complete": complete, "state": state}, path)


def load_state(directory: str | os.PathLike[str] | None, fp: str) -> dict[str, Any] | None:
    """The saved trainer state of an unfinished run with fingerprint ``fp``, else None."""
    if directory is None:
        return None
    path = Path(directory) / STATE_NAME
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a file from another version: start afresh, say why
        log.warning("%s: unreadable resume state (%s); training from the start", path, err)
        return None
    if saved.get("fingerprint") != fp:
        log.info("%s: params, data or code changed since it was written; training from the start",
                 path)
        return None
    if saved.get("complete"):
        log.info("%s: the previous run with these params completed; training again", path)
        return None
    epochs = len(saved["state"]["history"])
    log.info("%s: resuming after epoch %d", path, epochs)
    return saved["state"]


def mark_complete(directory: str | os.PathLike[str], fp: str,
                  history: list[dict[str, Any]]) -> None:
    """Replace the resume state of a finished run by a weightless marker."""
    save_state(directory, fp, {"history": history}, complete=True)
