"""``audiotag predict``: a trained checkpoint on new audio files -> a CSV of scores.

The checkpoint describes itself (model, classes, feature settings, normalisation
statistics), so the front end is rebuilt from it; every window of a file is scored and the
windows aggregated as the ``evaluate`` stage aggregates a test clip's crops
(:func:`audiotag.windows.predict_windows`). Files the ``download`` stage would exclude
(silent, too short, non-finite, unreadable) are listed in ``<out>.skipped.csv``.

Tags: the classes whose score reaches the threshold ``evaluate@<model>`` tuned on
validation clips (:func:`tuned_threshold`), ``--threshold`` instead, or the ``--top-k``
best; a single-label model tags its best class.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.core.device import pick_device
from audiotag.core.errors import AudioError, ParamsError
from audiotag.core.io import atomic_path
from audiotag.data.common import AUDIO_SUFFIXES
from audiotag.model_file import open_checkpoint
from audiotag.training.inference import task_of
from audiotag.windows import WindowPredictions, predict_windows

log = logging.getLogger(__name__)
PATH_COLUMN, TAGS_COLUMN = "path", "tags"
DEFAULT_THRESHOLD = 0.5  # what evaluate uses when it has no validation labels to tune on
MIN_SECONDS = 0.1  # the pipeline's data.min_seconds default


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


def tag_rows(scores: np.ndarray, names: list[str], top_k: int | None,
             threshold: float | None) -> list[str]:
    """``;``-separated tags per row of class scores ``(N, C)``, best first: the ``top_k``
    best, else every class whose score reaches ``threshold`` (``C == 0``: empty)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    if top_k is not None:
        order = order[:, :min(top_k, len(names))]
    return [";".join(names[j] for j in row
                     if top_k is not None or scores[i, j] >= threshold)
            for i, row in enumerate(order)]


def predictions_table(pred: WindowPredictions, n_classes: int, top_k: int | None,
                      threshold: float | None = None) -> pd.DataFrame:
    """``path, tags, <one column per output>``: ``tags`` holds the ``top_k`` classes of
    highest score or (``top_k`` None) those at or above ``threshold``, best first,
    ``;``-separated (empty for a regression checkpoint)."""
    clash = {PATH_COLUMN, TAGS_COLUMN} & set(pred.outputs)
    if clash:
        raise ValueError(f"a class is named {sorted(clash)[0]!r}, which is a column of the "
                         "predictions CSV; rename the class")
    tags = tag_rows(pred.scores[:, :n_classes], pred.outputs[:n_classes], top_k, threshold)
    table = pd.DataFrame(pred.scores, columns=pred.outputs)
    table.insert(0, TAGS_COLUMN, tags)
    table.insert(0, PATH_COLUMN, pred.paths)
    return table


def tuned_threshold(checkpoint: str | os.PathLike[str],
                    meta: CheckpointMeta) -> tuple[float | None, str]:
    """``(threshold, where it comes from)``; None and the reason when there is none.

    A checkpoint holding ``threshold`` carries its own. A pipeline checkpoint
    ``models/<m>/model.pt`` finds what ``evaluate@<m>`` tuned in ``metrics/details/<m>.json``
    of the same project, used only when written after the checkpoint (a retrained model
    whose evaluation has not run yet would get another model's threshold).
    """
    if meta.threshold is not None:
        return meta.threshold, f"{checkpoint} itself"
    path = Path(checkpoint).resolve()
    details = path.parents[2] / "metrics" / "details" / f"{path.parent.name}.json"
    if not details.is_file():
        return None, f"no {details}"
    if details.stat().st_mtime < path.stat().st_mtime:
        return None, f"{details} is older than {checkpoint} (evaluate has not run since)"
    value = json.loads(details.read_text()).get("threshold")
    return (None, f"{details} holds no threshold") if value is None else (float(value),
                                                                         str(details))


def _tagging(checkpoint: str | os.PathLike[str], meta: CheckpointMeta, top_k: int | None,
             threshold: float | None) -> tuple[int | None, float | None]:
    """``(top_k, threshold)`` for :func:`predictions_table`, logging what tags mean."""
    if top_k is not None or threshold is not None:
        return top_k, threshold
    if task_of(meta).single_label:
        return 1, None  # the argmax, as evaluate scores a single-label model
    tuned, where = tuned_threshold(checkpoint, meta)
    if tuned is None:
        log.warning("tags at the conventional threshold %g: %s (give --threshold)",
                    DEFAULT_THRESHOLD, where)
        return None, DEFAULT_THRESHOLD
    log.info("tags at threshold %g, tuned by evaluate (%s)", tuned, where)
    return None, tuned


def skipped_path(out: str | os.PathLike[str]) -> Path:
    """Where the unreadable files of a run writing ``out`` are listed."""
    out = Path(out)
    return out.with_name(out.stem + ".skipped.csv")


def _check_options(top_k: int | None, threshold: float | None, hop: float | None,
                   min_seconds: float, batch_size: int, workers: int) -> None:
    if top_k is not None and top_k < 0:
        raise ParamsError(f"--top-k must be >= 0, got {top_k}")
    if top_k is not None and threshold is not None:
        raise ParamsError("give --top-k or --threshold, not both")
    if threshold is not None and not 0 <= threshold <= 1:
        raise ParamsError(f"--threshold must be in [0, 1], got {threshold}")
    if hop is not None and not hop > 0:
        raise ParamsError(f"--hop must be > 0 seconds, got {hop}")
    if min_seconds < 0:
        raise ParamsError(f"--min-seconds must be >= 0, got {min_seconds}")
    if batch_size < 1:
        raise ParamsError(f"--batch-size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ParamsError(f"--workers must be >= 0, got {workers}")


def _write_skipped(pred: WindowPredictions, out: str | os.PathLike[str], n_files: int) -> None:
    """``<out>.skipped.csv`` (``path, reason``) when files were not scored, else no list."""
    listed = skipped_path(out)
    if not pred.skipped:
        listed.unlink(missing_ok=True)  # a list from an earlier run would now be wrong
        return
    for path, reason in pred.skipped:
        log.warning("skipped %s", reason if reason.startswith(path) else f"{path}: {reason}")
    with atomic_path(listed) as tmp:
        pd.DataFrame(pred.skipped, columns=["path", "reason"]).to_csv(tmp, index=False)
    log.warning("%d of %d file(s) not scored (unreadable, silent, too short or non-finite): "
                "listed in %s", len(pred.skipped), n_files, listed)
    if not pred.paths:
        raise AudioError(f"none of the {n_files} file(s) could be scored (reasons in "
                         f"{listed})")


def run_predict(checkpoint: str | os.PathLike[str], paths: list[str | os.PathLike[str]],
                out: str | os.PathLike[str], top_k: int | None = None, device: str = "auto",
                batch_size: int = 32, workers: int = 0, progress: bool | None = None,
                threshold: float | None = None, hop: float | None = None,
                min_seconds: float = MIN_SECONDS,
                timeline: str | os.PathLike[str] | None = None) -> WindowPredictions:
    """Score the audio under ``paths`` with ``checkpoint``; write ``out`` (see
    :func:`predictions_table`), ``timeline`` (one row per window: ``path, start_s, end_s``,
    one column per output) when given, and, when files were not scored,
    ``<out>.skipped.csv`` (``path, reason``). ``hop``: seconds between windows of a file
    longer than the evaluation windows cover (None: half the window)."""
    _check_options(top_k, threshold, hop, min_seconds, batch_size, workers)
    files = find_audio(paths)
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under "
                                f"{', '.join(map(str, paths))}")
    try:
        torch_device = pick_device(device, key="--device")
    except RuntimeError as err:  # a device this machine does not have
        raise ParamsError(str(err)) from err
    model, meta = open_checkpoint(checkpoint, torch_device)
    top_k, threshold = _tagging(checkpoint, meta, top_k, threshold)
    log.info("%s (%s): %d file(s) on %s", checkpoint, meta.model_name, len(files),
             torch_device)
    pred = predict_windows(model, meta, files, hop, min_seconds,
                           batch_size, torch_device, workers, progress)
    _write_skipped(pred, out, len(files))
    table = predictions_table(pred, task_of(meta).n_classes, top_k, threshold)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    if timeline is not None:
        with atomic_path(timeline) as tmp:
            pred.timeline.to_csv(tmp, index=False, float_format="%.6g")
    log.info("wrote %s: %d file(s), %.1f files/s", out, len(pred.paths),
             len(files) / max(pred.seconds, 1e-9))
    return pred
