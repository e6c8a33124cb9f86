"""Every part of a recording scored: the windows ``audiotag predict`` cuts out of a file.

A file no longer than what the evaluation windows (``features.eval_crops``) cover gets
exactly those windows, so ``predict`` reproduces the ``evaluate`` stage's scores; a longer
file gets the model's window slid over it every ``hop`` frames, the last window ending
at its last frame. Either way the window scores become the file's as evaluation
aggregates crops (``features.eval_aggregate``: mean or max). Files are screened first as
the ``download`` stage screens clips (:func:`audiotag.data.screen.probe`).

A file longer than one decoding block (``BLOCK_SECONDS``) is never whole in memory: its
features come piece by piece (:func:`audiotag.features.stream.clip_frames`, bit for bit
the whole file's) and its windows are cut and scored as the pieces arrive
(:func:`long_file_windows`), so memory does not grow with its length.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.core.errors import AudioError
from audiotag.data.screen import probe
from audiotag.features.audio import one_piece, resampled_length
from audiotag.features.frames import eval_starts
from audiotag.features.frontend import frames_per_second, n_frames
from audiotag.features.store import (
    Batch,
    ClipPipeline,
    Item,
    check_finite,
    clip_windows,
    collate_clips,
)
from audiotag.features.stream import clip_frames
from audiotag.training.inference import predict, task_of

TIME_COLUMNS = ["path", "start_s", "end_s"]


def covers(starts: list[int], window: int, length: int) -> bool:
    """Whether windows of ``window`` frames at ``starts`` leave no frame of ``length`` out."""
    end = 0
    for start in sorted(starts):
        if start > end:
            return False
        end = max(end, start + window)
    return end >= length


def sliding_starts(length: int, window: int, hop: int) -> list[int]:
    """Starts ``0, hop, 2 hop, ...`` and a last window ending at the last frame."""
    last = max(0, length - window)
    starts = list(range(0, last + 1, hop))
    return starts if starts[-1] == last else [*starts, last]


def file_starts(length: int, window: int, n_crops: int, hop: int) -> list[int]:
    """The evaluation windows when they cover the file, else the sliding ones."""
    starts = eval_starts(length, window, n_crops)
    return starts if covers(starts, window, length) else sliding_starts(length, window, hop)


def hop_frames(pipeline: ClipPipeline, hop_s: float | None) -> int:
    """``--hop`` in frames: ``hop_s`` seconds, or half the model's window (None)."""
    if hop_s is None:
        return max(1, pipeline.window // 2)
    return max(1, round(hop_s * frames_per_second(pipeline.config)))


@dataclass
class FileWindows:
    """One readable file's model input ``(K, dim, T)`` (None for a long file: its
    windows come from :func:`long_file_windows`), its windows' starts (frames; None for a
    whole ``beat_sync`` sequence) and its duration in seconds."""

    x: torch.Tensor | None
    starts: list[int] | None
    duration_s: float


class AudioWindows(Dataset):
    """Items ``(i, FileWindows or None, reason)``: the windows of file ``i``, or None and
    why it is not scored (the screening's reason, or unreadable)."""

    def __init__(self, paths: list[str], pipeline: ClipPipeline, hop: int,
                 min_seconds: float) -> None:
        self.paths, self.pipeline, self.hop, self.min_seconds = paths, pipeline, hop, min_seconds

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, FileWindows | None, str]:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # per-clip ops are too small for a thread pool (store.py)
        try:
            return i, self._windows(self.paths[i]), ""
        except AudioError as err:  # screened out, unreadable or non-finite: never scored
            return i, None, str(err)
        finally:
            torch.set_num_threads(threads)

    def _windows(self, path: str) -> FileWindows:
        found = probe(Path(path), self.min_seconds)
        if found.problem:
            raise AudioError(found.problem)
        p = self.pipeline
        frames_in = round(found.duration_s * found.sample_rate)
        if p.config.streamed and not one_piece(frames_in, found.sample_rate):
            length = n_frames(p.config, resampled_length(frames_in, found.sample_rate,
                                                         p.config.sample_rate))
            return FileWindows(None, file_starts(length, p.window, p.n_crops, self.hop),
                               found.duration_s)
        frames = p.extract(path)  # (T, dim) float16
        check_finite(frames, path)
        starts = (None if p.config.beat_sync
                  else file_starts(frames.shape[0], p.window, p.n_crops, self.hop))
        x = clip_windows(frames, starts, p.window, p.shift, p.scale,
                         p.projection)  # (K, dim, T)
        return FileWindows(x, starts, found.duration_s)


def long_file_windows(path: str, pipeline: ClipPipeline,
                      starts: list[int]) -> Iterator[torch.Tensor]:
    """The model inputs ``(dim, window)`` at ``starts`` (ascending) of a file, cut from its
    features as they are made (:func:`clip_frames`): the frames held are those of the
    windows not yet given out, and one piece. :class:`AudioError` on non-finite features."""
    p, at = pipeline, 0
    held, offset = np.zeros((0, 0), dtype=np.float16), 0  # frames [offset, offset + len)
    for piece in clip_frames(path, p.extract.frontend):
        frames = np.ascontiguousarray(piece.numpy().T.astype(np.float16))  # (n, dim)
        check_finite(frames, path)
        held = np.concatenate([held, frames]) if len(held) else frames
        while at < len(starts) and starts[at] + p.window <= offset + len(held):
            yield clip_windows(held, [starts[at] - offset], p.window, p.shift, p.scale,
                               p.projection)[0]
            at += 1
        drop = min(len(held), (starts[at] if at < len(starts) else 1 << 62) - offset)
        held, offset = held[drop:], offset + drop
    for start in starts[at:]:  # past the end (zero-padded), as clip_windows cuts them
        yield clip_windows(held, [start - offset], p.window, p.shift, p.scale,
                           p.projection)[0]


def _batched(items: Iterator[torch.Tensor], size: int) -> Iterator[list[torch.Tensor]]:
    batch: list[torch.Tensor] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class WindowPredictions:
    """Scores per file (aggregated as evaluation does) and per window, and the files not
    scored."""

    outputs: list[str]  # the classes, then the regression targets
    paths: list[str]  # one per row of scores, in input order
    scores: np.ndarray  # (files, outputs)
    timeline: pd.DataFrame  # path, start_s, end_s, <outputs>: one row per window
    skipped: list[tuple[str, str]]  # (path, reason)
    seconds: float  # wall time of screening, decoding, features and forward passes


def _spans(item: FileWindows, window: int, fps: float) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` of each window, cut at the file's end."""
    if item.starts is None:
        return [(0.0, item.duration_s)]
    return [(s / fps, min((s + window) / fps, item.duration_s)) for s in item.starts]


def predict_windows(model: torch.nn.Module, meta: CheckpointMeta, paths: list[str | Path],
                    hop_s: float | None,
                    min_seconds: float, batch_size: int, device: torch.device,
                    workers: int = 0, progress: bool | None = None) -> WindowPredictions:
    """Scores of ``model`` (built from the checkpoint ``meta``, on ``device``) for every
    window of each file (see the module doc); ``hop_s`` None: half the window.
    ``batch_size`` files are decoded together and their windows scored ``batch_size`` at
    a time."""
    pipeline = ClipPipeline(meta.features, meta.stats)
    fps = frames_per_second(pipeline.config)
    data = AudioWindows([str(p) for p in paths], pipeline, hop_frames(pipeline, hop_s),
                        min_seconds)
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers, collate_fn=list)
    done: list[tuple[int, list[tuple[float, float]]]] = []  # (file, its windows' spans)
    skipped: list[tuple[str, str]] = []
    no_target = torch.zeros(0)

    def batches() -> Iterator[Batch]:
        for items in tqdm(loader, desc="predict", unit="batch",
                          disable=None if progress is None else not progress):
            skipped.extend((data.paths[i], err) for i, w, err in items if w is None)
            good = [(i, w) for i, w, _ in items if w is not None]
            done.extend((i, _spans(w, pipeline.window, fps)) for i, w in good)
            windows = itertools.chain.from_iterable(  # each (dim, T)
                w.x if w.x is not None else long_file_windows(data.paths[i], pipeline, w.starts)
                for i, w in good)
            for chunk in _batched(windows, batch_size):
                yield collate_clips([Item(x, no_target, torch.tensor(1.0)) for x in chunk])

    started = time.perf_counter()
    outputs = meta.outputs
    try:
        per_window, _, _ = predict(model, batches(), device, spec=task_of(meta))
    except ValueError:  # no file could be scored
        if done:
            raise
        per_window = np.zeros((0, len(outputs)), dtype=np.float32)
    scores, rows, at = [], [], 0
    for i, spans in done:
        mine = per_window[at:at + len(spans)]  # (windows, outputs) of file i
        at += len(spans)
        scores.append(mine.max(axis=0) if pipeline.config.eval_aggregate == "max"
                      else mine.mean(axis=0))
        rows += [(data.paths[i], a, b) for a, b in spans]
    timeline = pd.concat([pd.DataFrame(rows, columns=TIME_COLUMNS),
                          pd.DataFrame(per_window, columns=outputs)], axis=1)
    return WindowPredictions(outputs, [data.paths[i] for i, _ in done],
                             np.stack(scores) if scores else per_window[:0], timeline,
                             skipped, time.perf_counter() - started)
