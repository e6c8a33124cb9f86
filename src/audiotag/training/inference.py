"""Per-clip predictions of a trained model on the clips of a feature store
(:func:`predict_clips`); on audio files, ``audiotag predict`` goes through
:mod:`audiotag.windows`.

Every consumer of predictions (evaluation, label analysis, the report, ``audiotag
predict``) shares each step: features of a file come from
the extractor of the ``features`` stage (:class:`~audiotag.features.store.ClipPipeline`),
windows and normalisation from :func:`~audiotag.features.store.clip_windows`, and scores
(one centre crop, or several crops averaged) from :func:`predict`, which the training
loop's validation uses too.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.contracts.predictions import ClipPredictions
from audiotag.features.store import Batch, FeatureSet, collate_clips
from audiotag.training.tasks import TaskSpec, output_scores

# (outputs (B, K), targets (B, K)) -> per-clip loss (B,)
ClipLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def crop_logits(model: torch.nn.Module, x: torch.Tensor,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Logits ``(B, K, C)`` of a batch ``(B, dim, T)`` (K = 1) or ``(B, K, dim, T)``.

    ``lengths`` ``(B,)`` (valid frames of zero-padded variable-length items, from
    :func:`audiotag.features.store.collate_clips`) go to models that declare
    ``accepts_lengths``; other models pool over the padded frames too.
    """
    inner = getattr(model, "module", model)  # DistributedDataParallel / AveragedModel
    if lengths is not None and getattr(inner, "accepts_lengths", False):
        return model(x, lengths).unsqueeze(1)  # variable-length items are never cropped
    if x.dim() == 4:
        b, k = x.shape[:2]
        return model(x.flatten(0, 1)).view(b, k, -1)
    return model(x).unsqueeze(1)


def clip_losses(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: ClipLoss,
                logits: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Per-clip loss ``(B,)``: the mean over a clip's crops of ``loss_fn`` on each crop (every
    crop carries its clip's labels), so a clip counts once whatever its number of crops."""
    logits = crop_logits(model, x, lengths) if logits is None else logits  # (B, K, C)
    b, k, c = logits.shape
    per_crop = loss_fn(logits.reshape(b * k, c).float(), y.repeat_interleave(k, dim=0))
    return per_crop.view(b, k).mean(dim=1)


@torch.no_grad()
def predict(model: torch.nn.Module, loader: Iterable[Batch], device: torch.device,
            loss_fn: ClipLoss | None = None, spec: TaskSpec | None = None,
            crop_aggregate: str = "mean") -> tuple[np.ndarray, np.ndarray, float]:
    """Scores ``(N, outputs)``, the loader's targets ``(N, ...)`` and the mean (unweighted)
    loss (NaN without loss_fn), one row per clip.

    Scores are :func:`audiotag.training.tasks.output_scores` of ``spec`` (class scores by
    softmax or sigmoid, then raw regression outputs); without a spec every output is a
    sigmoid score. ``loader`` yields :class:`~audiotag.features.store.Batch` es (see
    :func:`~audiotag.features.store.collate_clips`) with x ``(B, dim, T)``, or
    ``(B, K, dim, T)`` for K crops per clip: a clip's scores are the mean of its crops'
    scores (``crop_aggregate="max"``: their maximum, per output), its loss the mean of its
    crops' losses.
    """
    if crop_aggregate not in ("mean", "max"):
        raise ValueError(f"crop_aggregate must be mean or max, not {crop_aggregate!r}")
    model.eval()
    scores, targets, total = [], [], 0.0
    for batch in loader:
        b = batch.to(device)
        logits = crop_logits(model, b.x, b.lengths).float()  # (B, K, C): K crops of each clip
        if loss_fn is not None:
            total += clip_losses(model, b.x, b.y, loss_fn, logits).sum().item()
        k = logits.shape[1]
        flat = logits.flatten(0, 1)
        s = torch.sigmoid(flat) if spec is None else output_scores(flat, spec)
        s = s.view(b.x.shape[0], k, -1)
        s = s.amax(dim=1) if crop_aggregate == "max" else s.mean(dim=1)  # over a clip's crops
        scores.append(s.cpu().numpy())
        targets.append(b.y.cpu().numpy())
    if not scores:
        raise ValueError("predict: the loader yielded no clips")
    n = sum(len(s) for s in scores)
    mean_loss = total / max(n, 1) if loss_fn is not None else math.nan
    return np.concatenate(scores), np.concatenate(targets), mean_loss


def predict_clips(model: torch.nn.Module, store_dir: str | os.PathLike[str],
                  roles: tuple[str, ...], batch_size: int, device: torch.device,
                  spec: TaskSpec | None = None,
                  labels: pd.DataFrame | None = None) -> ClipPredictions:
    """Scores of ``model`` (already on ``device``) for the store's clips with ``roles`` (with
    ``labels``, a ``clip_id, labels, weight`` table: only its clips, with its labels).

    One row per clip: with ``features.eval_crops: N`` the store yields N windows per clip
    and their scores are averaged, or with ``features.eval_aggregate: max`` their maximum
    taken (see :func:`predict`);
    ``batch_size`` counts clips. ``spec`` (from the checkpoint, see :func:`task_of`) says
    which outputs are class scores (softmax or sigmoid) and which are regression outputs;
    without it every output is a sigmoid score.
    """
    data = FeatureSet(store_dir, roles, labels=labels)
    if len(data) == 0:
        raise ValueError(f"{store_dir}: no clips with role {' or '.join(roles)}")
    started = time.perf_counter()
    loader = DataLoader(data, batch_size=batch_size, collate_fn=collate_clips)
    scores, targets, _ = predict(model, loader, device, spec=spec,
                                 crop_aggregate=data.config.eval_aggregate)
    seconds = time.perf_counter() - started
    return ClipPredictions(data.classes, data.index, scores, targets, seconds)


def task_of(meta: CheckpointMeta) -> TaskSpec:
    """The :class:`TaskSpec` a checkpoint was trained for (old checkpoints: multilabel)."""
    return TaskSpec(meta.task, n_classes=meta.n_class_outputs, n_targets=len(meta.targets),
                    single_label=bool(meta.single_label))
