"""``audiotag predict``: a trained checkpoint on new audio files -> a CSV of scores.

The checkpoint describes itself (model, classes, feature settings, normalisation
statistics), so the front end is rebuilt from it and every file is scored exactly as the
``evaluate`` stage scores a test clip (:func:`audiotag.training.inference.predict_files`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from audiotag.core.device import pick_device
from audiotag.core.errors import AudioError, ParamsError
from audiotag.core.io import atomic_path
from audiotag.data.common import AUDIO_SUFFIXES
from audiotag.training.checkpoint import load_checkpoint
from audiotag.training.inference import FilePredictions, predict_files, task_of

log = logging.getLogger(__name__)
PATH_COLUMN, TAGS_COLUMN = "path", "tags"


def find_audio(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """Files named in ``paths``, and the audio files (the suffixes the download stage
    reads) under each folder, recursively and sorted. A named file is kept whatever its
    suffix, so one that is not audio is reported as unreadable, not ignored."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*")
                            if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return found


def predictions_table(pred: FilePredictions, n_classes: int, top_k: int) -> pd.DataFrame:
    """``path, tags, <one column per output>``: ``tags`` holds the ``top_k`` classes of
    highest score, best first, ``;``-separated (empty for a regression checkpoint)."""
    clash = {PATH_COLUMN, TAGS_COLUMN} & set(pred.outputs)
    if clash:
        raise ValueError(f"a class is named {sorted(clash)[0]!r}, which is a column of the "
                         "predictions CSV; rename the class")
    names = np.asarray(pred.outputs[:n_classes], dtype=object)
    k = min(top_k, n_classes)
    best = np.argsort(-pred.scores[:, :n_classes], axis=1, kind="stable")[:, :k]
    tags = [";".join(names[row]) for row in best] if k else [""] * len(pred.paths)
    table = pd.DataFrame(pred.scores, columns=pred.outputs)
    table.insert(0, TAGS_COLUMN, tags)
    table.insert(0, PATH_COLUMN, pred.paths)
    return table


def skipped_path(out: str | os.PathLike[str]) -> Path:
    """Where the unreadable files of a run writing ``out`` are listed."""
    out = Path(out)
    return out.with_name(out.stem + ".skipped.csv")


def run_predict(checkpoint: str | os.PathLike[str], paths: list[str | os.PathLike[str]],
                out: str | os.PathLike[str], top_k: int = 3, device: str = "auto",
                batch_size: int = 32, workers: int = 0,
                progress: bool | None = None) -> FilePredictions:
    """Score the audio under ``paths`` with ``checkpoint``; write ``out`` (see
    :func:`predictions_table`) and, when files could not be read, ``<out>.skipped.csv``
    (``path, reason``)."""
    if top_k < 0:
        raise ParamsError(f"--top-k must be >= 0, got {top_k}")
    if batch_size < 1:
        raise ParamsError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ParamsError(f"--workers must be >= 0, got {workers}")
    files = find_audio(paths)
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under "
                                f"{', '.join(map(str, paths))}")
    try:
        torch_device = pick_device(device, key="--device")
    except RuntimeError as err:  # a device this machine does not have
        raise ParamsError(str(err)) from err
    model, meta = load_checkpoint(checkpoint, torch_device)
    log.info("%s (%s): %d file(s) on %s", checkpoint, meta["model_name"], len(files),
             torch_device)
    pred = predict_files(model, meta, files, batch_size, torch_device, workers, progress)
    table = predictions_table(pred, task_of(meta).n_classes, top_k)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    listed = skipped_path(out)
    if pred.skipped:
        for path, reason in pred.skipped:
            log.warning("skipped %s", reason if reason.startswith(path) else f"{path}: {reason}")
        with atomic_path(listed) as tmp:
            pd.DataFrame(pred.skipped, columns=["path", "reason"]).to_csv(tmp, index=False)
        log.warning("%d of %d file(s) unreadable and not scored: listed in %s",
                    len(pred.skipped), len(files), listed)
        if not pred.paths:
            raise AudioError(f"none of the {len(files)} file(s) could be read (reasons in "
                             f"{listed})")
    elif listed.exists():  # a list from an earlier run would now be wrong
        listed.unlink()
    log.info("wrote %s: %d file(s), %.1f clips/s", out, len(pred.paths),
             len(files) / max(pred.seconds, 1e-9))
    return pred
