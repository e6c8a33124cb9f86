"""Per-clip predictions of a trained model on the clips of a feature store.

Every consumer of predictions (evaluation, label analysis, the report) goes through
:func:`predict_clips`, so how a clip becomes one score vector (one centre crop, or several
crops averaged when the feature store says so) is decided in one place.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from audiotag.features.store import FeatureSet, collate_clips
from audiotag.training.loop import predict
from audiotag.training.tasks import TaskSpec


@dataclass
class ClipPredictions:
    """One row per clip, in the order of ``index``."""

    classes: list[str]
    index: pd.DataFrame  # the store's index rows: clip_id, subset, fold, labels, ...
    scores: np.ndarray  # (clips, outputs): class scores, then raw regression outputs
    targets: np.ndarray  # (clips, classes) multi-hot labels
    seconds: float  # wall time of the forward passes (inference time)

    @property
    def clip_ids(self) -> list[str]:
        return self.index["clip_id"].tolist()

    def __len__(self) -> int:
        return len(self.index)


def predict_clips(model: torch.nn.Module, store_dir: str | os.PathLike[str],
                  roles: tuple[str, ...], batch_size: int, device: torch.device,
                  spec: TaskSpec | None = None) -> ClipPredictions:
    """Scores of ``model`` (already on ``device``) for the store's clips with ``roles``.

    One row per clip: with ``features.eval_crops: N`` the store yields N windows per clip
    and their scores are averaged (see :func:`audiotag.training.loop.predict`);
    ``batch_size`` counts clips. ``spec`` (from the checkpoint, see :func:`task_of`) says
    which outputs are class scores (softmax or sigmoid) and which are regression outputs;
    without it every output is a sigmoid score.
    """
    data = FeatureSet(store_dir, roles)
    if len(data) == 0:
        raise ValueError(f"{store_dir}: no clips with role {' or '.join(roles)}")
    started = time.perf_counter()
    loader = DataLoader(data, batch_size=batch_size, collate_fn=collate_clips)
    scores, targets, _ = predict(model, loader, device, spec=spec)
    seconds = time.perf_counter() - started
    return ClipPredictions(data.classes, data.index, scores, targets, seconds)


def task_of(meta: dict) -> TaskSpec:
    """The :class:`TaskSpec` a checkpoint was trained for (old checkpoints: multilabel)."""
    task = meta.get("task", "multilabel")
    n_targets = len(meta.get("targets") or [])
    n_classes = 0 if task == "regression" else len(meta["classes"])
    return TaskSpec(task, n_classes=n_classes, n_targets=n_targets,
                    single_label=bool(meta.get("single_label", False)))
