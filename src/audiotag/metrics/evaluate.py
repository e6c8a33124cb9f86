"""Evaluate a checkpoint on the test clips of a feature store."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from audiotag.core.config import EvaluateConfig
from audiotag.core.io import atomic_path, write_json
from audiotag.metrics.lwlrap import per_class_lwlrap
from audiotag.training.checkpoint import load_checkpoint
from audiotag.training.inference import predict_clips
from audiotag.training.utils import pick_device

log = logging.getLogger(__name__)


def evaluate_model(checkpoint: str | os.PathLike[str], features_dir: str | os.PathLike[str],
                   metrics_path: str | os.PathLike[str], per_class_path: str | os.PathLike[str],
                   cfg: EvaluateConfig) -> dict:
    """Test-set lwlrap (overall -> ``metrics_path``, per class -> ``per_class_path`` CSV)."""
    device = pick_device("auto")
    model, meta = load_checkpoint(checkpoint, device)
    pred = predict_clips(model, features_dir, ("test",), cfg.batch_size, device)
    if pred.classes != meta["classes"]:
        raise ValueError(f"{checkpoint}: trained on classes {meta['classes']} but "
                         f"{features_dir} has {pred.classes}; re-run training")
    scores, targets = pred.scores, pred.targets
    result = per_class_lwlrap(targets, scores)
    metrics = {
        "lwlrap": round(result.overall, 6),
        "n_test_clips": result.n_clips,
        "valid_lwlrap": round(float(meta["valid_lwlrap"]), 6),
        "best_epoch": int(meta["epoch"]),
        "n_parameters": int(meta["n_parameters"]),
    }
    table = pd.DataFrame({
        "class": pred.classes,
        "lwlrap": np.round(result.per_class, 6),
        "weight": np.round(result.weights, 6),
        "positives": targets.sum(axis=0).astype(int),
    })
    with atomic_path(per_class_path) as tmp:
        table.to_csv(tmp, index=False)
    write_json(metrics_path, metrics)
    log.info("%s: test lwlrap %.4f on %d clips", Path(checkpoint).parent.name,
             result.overall, result.n_clips)
    return metrics
