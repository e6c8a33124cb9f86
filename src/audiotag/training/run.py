"""Train one registered model on a feature store, logging every epoch with dvclive."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dvclive import Live
from torch.utils.data import DataLoader

from audiotag.core.config import ParamsError, TrainConfig
from audiotag.core.io import atomic_dir, read_json, write_json
from audiotag.features.store import FeatureSet, collate_clips
from audiotag.models import MODELS, create_model, list_models
from audiotag.training.checkpoint import save_checkpoint
from audiotag.training.loop import EpochResult, fit
from audiotag.training.utils import count_parameters, pick_device, seed_everything

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "model.pt"
FIRST_EPOCH_NAME = "first_epoch.pt"  # weights after epoch 1, for the weight analysis
HISTORY_NAME = "history.json"


def _log_epoch(live: Live, result: EpochResult) -> None:
    live.step = result.epoch  # x axis of every curve = epoch number, 1-based
    live.log_metric("train/loss", result.train_loss)
    live.log_metric("valid/loss", result.valid_loss)
    live.log_metric("valid/lwlrap", result.valid_lwlrap)
    live.log_metric("lr", result.lr)
    for layer, norm in result.grad_norms.items():
        live.log_metric(f"grad_norm/{layer}", norm)
    # per-layer curves stay in plots/ (and history.json); dropping them from the summary
    # keeps `dvc exp show` to a readable number of columns
    live.summary.pop("grad_norm", None)
    live.sync()  # writes metrics.json and the .tsv histories now


def _loaders(features_dir: Path, cfg: TrainConfig, seed: int):
    """Training loader (random crops, ``crops_per_clip`` per clip, shuffled) and validation
    loader (the evaluation crops, one score per clip), both seeded from ``seed``."""
    generator = seed_everything(seed)
    train_set = FeatureSet(features_dir, ("train",), train=True)
    valid_set = FeatureSet(features_dir, ("valid",))
    for name, data in (("training", train_set), ("validation", valid_set)):
        if len(data) == 0:
            raise ValueError(f"{features_dir}: no {name} clips (check the split params)")
    # random crops draw from torch's RNG: in the main process it is seeded above; DataLoader
    # workers (if any are ever used) are seeded from `generator`, so runs stay reproducible
    train = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                       drop_last=len(train_set) > cfg.batch_size,  # BatchNorm needs batch > 1
                       collate_fn=collate_clips)
    valid = DataLoader(valid_set, batch_size=cfg.batch_size, collate_fn=collate_clips)
    return train_set, train, valid


def check_model_accepts(name: str, kind: str) -> None:
    """Fail early when model ``name`` cannot take ``features.kind`` (e.g. a 2-D CNN on a raw
    waveform, whose "image" would be one band high and tens of thousands of frames long)."""
    if kind == "waveform" and not getattr(MODELS.get(name).factory, "accepts_waveform", False):
        takers = [m for m in list_models()
                  if getattr(MODELS.get(m).factory, "accepts_waveform", False)]
        raise ParamsError(f"features.kind=waveform: model {name!r} needs a time-frequency "
                          f"input; train it on another features.kind, or train a model "
                          f"that takes raw waveforms ({', '.join(takers)})")


def train_model(name: str, model_params: dict[str, Any], features_dir: str | os.PathLike[str],
                model_dir: str | os.PathLike[str], live_dir: str | os.PathLike[str],
                cfg: TrainConfig, seed: int) -> list[EpochResult]:
    """Train ``name``; writes ``model_dir/{model.pt,first_epoch.pt,history.json}``
    atomically at the end.

    ``model.pt`` holds the weights of the epoch with the best validation lwlrap plus the
    model name, its params, the class list and the normalisation statistics;
    ``first_epoch.pt`` the same after epoch 1; ``history.json`` every epoch's losses,
    lwlrap, learning rate, per-layer gradient norms and update-to-weight ratios.
    """
    features_dir = Path(features_dir)
    check_model_accepts(name, read_json(features_dir / "features.json")["kind"])
    train_set, train_loader, valid_loader = _loaders(features_dir, cfg, seed)
    device = pick_device(cfg.device)
    model = create_model(name, num_classes=len(train_set.classes), n_mels=train_set.n_mels,
                         **model_params)
    meta = {"model_name": name, "model_params": model_params,
            "num_classes": len(train_set.classes), "n_mels": train_set.n_mels,
            "classes": train_set.classes, "features": train_set.meta["config"],
            "stats": train_set.stats, "n_parameters": count_parameters(model)}
    log.info("%s: %d parameters, %d train / %d valid clips, device %s", name,
             meta["n_parameters"], len(train_set), len(valid_loader.dataset), device)
    started = time.perf_counter()
    with atomic_dir(model_dir) as tmp, \
            Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:

        def on_epoch(result: EpochResult, is_best: bool) -> None:
            log.info("%s epoch %d: train loss %.4f, valid loss %.4f, valid lwlrap %.4f%s",
                     name, result.epoch, result.train_loss, result.valid_loss,
                     result.valid_lwlrap, " (best)" if is_best else "")
            state = {**meta, "epoch": result.epoch, "valid_lwlrap": result.valid_lwlrap}
            if result.epoch == 1:
                save_checkpoint(tmp / FIRST_EPOCH_NAME, model, state)
            if is_best:
                save_checkpoint(tmp / CHECKPOINT_NAME, model, state)
            _log_epoch(live, result)

        history = fit(model, train_loader, valid_loader, cfg, device, on_epoch)
        best = max(history, key=lambda r: r.valid_lwlrap)
        live.summary["best"] = {"epoch": best.epoch, "valid_lwlrap": best.valid_lwlrap,
                                "train_loss": best.train_loss, "valid_loss": best.valid_loss}
        live.summary["epochs_run"] = len(history)
        live.summary["n_parameters"] = meta["n_parameters"]
        live.summary["train_seconds"] = round(time.perf_counter() - started, 1)
        write_json(tmp / HISTORY_NAME, {"model": name, "best_epoch": best.epoch,
                                        "epochs": [asdict(r) for r in history]})
    return history
