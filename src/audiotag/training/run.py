"""``train@<model>`` and ``cv_fold@``'s training: the recipe's run (:mod:`audiotag.training.recipe`)
fitted with every epoch logged by dvclive, the resume state saved after each, and the model
directory written at the end."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from dvclive import Live

from audiotag.core.device import set_threads
from audiotag.core.io import atomic_dir, atomic_path, write_json
from audiotag.training import distributed, resume
from audiotag.training.checkpoint import save_state_dict
from audiotag.training.config import TrainConfig
from audiotag.training.loop import EpochResult, FinalModel, final_model
from audiotag.training.recipe import BuiltRun, ClipChoice, Recipe, StoreClips, build_run
from audiotag.training.utils import layer_names

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "model.pt"
FIRST_EPOCH_NAME = "first_epoch.pt"  # weights after epoch 1, for the weight analysis
HISTORY_NAME = "history.json"


def _finite(value: float) -> bool:
    return value is not None and math.isfinite(value)


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats as None (JSON has no NaN; `dvc exp show` shows '-')."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _marked(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its non-finite gradient norms as the strings ``"inf"``, ``"-inf"``,
    ``"nan"``: JSON has no such numbers, and :func:`json_safe`'s null reads as "no record",
    which would hide an exploding gradient from the weight analysis."""
    norms = record.get("grad_norms") or {}
    return {**record, "grad_norms": {layer: str(v) if isinstance(v, float) and
                                     not math.isfinite(v) else v for layer, v in norms.items()}}


def history_json(history: dict[str, Any]) -> dict[str, Any]:
    """``history.json``'s content: :func:`json_safe`, gradient norms :func:`_marked`."""
    swa = history.get("swa")
    return json_safe({**history, "epochs": [_marked(e) for e in history["epochs"]],
                      "swa": _marked(swa) if swa is not None else None})


def _log_epoch(live: Live, result: EpochResult) -> None:
    live.step = result.epoch  # x axis of every curve = epoch number, 1-based
    prefix = "reconstruct/" if result.phase == "reconstruct" else ""
    live.log_metric(f"{prefix}train/loss", result.train_loss)
    live.log_metric(f"{prefix}valid/loss", result.valid_loss)
    if _finite(result.valid_lwlrap):
        live.log_metric("valid/lwlrap", result.valid_lwlrap)
    if _finite(result.valid_accuracy):
        live.log_metric("valid/accuracy", result.valid_accuracy)
    if _finite(result.train_lwlrap):  # train.train_score_clips: the fixed training subset
        live.log_metric("train/lwlrap", result.train_lwlrap)
    if _finite(result.train_accuracy):
        live.log_metric("train/accuracy", result.train_accuracy)
    live.log_metric("lr", result.lr)
    for layer, norm in result.grad_norms.items():
        live.log_metric(f"grad_norm/{layer}", norm)
    # per-layer curves stay in plots/ (and history.json); dropping them from the summary
    # keeps `dvc exp show` to a readable number of columns
    live.summary.pop("grad_norm", None)
    live.sync()  # writes metrics.json and the .tsv histories now


LR_STEPS_NAME = "lr_per_step.tsv"  # beside dvclive's per-epoch curves; x = optimizer step


def _log_lr_steps(live: Live, history: list[EpochResult]) -> None:
    """The learning rate of every optimizer step so far (all phases), rewritten whole: a
    per-epoch value cannot show a schedule that cycles within an epoch."""
    lrs = [lr for result in history for lr in result.lr_steps]
    rows = "".join(f"{step}\t{lr:.9g}\n" for step, lr in enumerate(lrs, start=1))
    path = Path(live.plots_dir) / "metrics" / LR_STEPS_NAME
    with atomic_path(path) as tmp:
        tmp.write_text("step\tlr\n" + rows)


def _saved(result: EpochResult) -> dict[str, Any]:
    """An epoch as history.json keeps it: without its wall time (in the timings file), so
    that the model directory (a DVC out) has the same hash whenever the same params train
    it, on any machine (docs/reproducibility.md)."""
    record = asdict(result)
    record.pop("seconds")
    return record




def train_model(name: str, model_params: dict[str, Any], features_dir: str | os.PathLike[str],
                model_dir: str | os.PathLike[str], live_dir: str | os.PathLike[str],
                cfg: TrainConfig, seed: int,
                resume_dir: str | os.PathLike[str] | None = None,
                labels: str | os.PathLike[str] | None = None,
                clips: ClipChoice | None = None,
                timings: str | os.PathLike[str] | None = None) -> list[EpochResult]:
    """Train ``name``; writes ``model_dir/{model.pt,first_epoch.pt,history.json}``
    atomically at the end, and the wall-clock times to ``timings`` (when given).

    ``model.pt`` holds the weights of the epoch with the best validation score (lwlrap;
    minus the validation loss for regression), or the SWA average with ``swa_start_epoch``,
    plus the model name, its params, the task, the class list, the regression targets and
    the normalisation statistics; ``first_epoch.pt`` the same after epoch 1;
    ``history.json`` every epoch's losses, lwlrap, learning rate (first step and every
    step), per-layer gradient norms and update-to-weight ratios (of the layers that train
    in that epoch), and the model's layers in order. With ``resume_dir`` the trainer's
    state is saved there after every epoch and an interrupted run continues from it (see
    :mod:`audiotag.training.resume`). ``labels``: a labels file (label cleaning's
    ``data/clean/labels.csv``) that gives the training clips, their labels and loss
    weights instead of the store's. ``clips``: the clips that train and those that
    validate instead of the store's ``train`` and ``valid`` roles (a k-fold CV fold;
    ``labels`` must then be None).
    """
    if clips is not None and labels is not None:
        raise ValueError("train_model: give labels or clips, not both")
    recipe = Recipe(name, model_params, Path(features_dir), cfg, seed,
                    clips if clips is not None else StoreClips(
                        Path(labels) if labels is not None else None),
                    resume_dir=Path(resume_dir) if resume_dir is not None else None)
    out = RunOutputs(Path(model_dir), Path(live_dir),
                     Path(timings) if timings is not None else None)
    set_threads(cfg.threads)
    ctx, device = distributed.setup(cfg.device)
    try:
        history = _train(recipe, out, ctx, device)
    except BaseException:
        distributed.teardown(ctx, wait=False)  # the other processes fail on their own
        raise
    distributed.teardown(ctx)
    return history


@dataclass(frozen=True)
class RunOutputs:
    """Where a run's results go (see :func:`train_model`)."""

    model_dir: Path  # model.pt, first_epoch.pt, history.json
    live_dir: Path  # dvclive's curves and summary
    timings: Path | None = None  # the wall-clock times (:func:`write_timings`)


def _train(recipe: Recipe, out: RunOutputs, ctx: distributed.Context,
           device: torch.device) -> list[EpochResult]:
    built = build_run(recipe, ctx, device)
    if not ctx.main:  # replicas train in step with process 0, which alone writes outputs
        return built.trainer.run(lambda result, is_best: None)
    started = time.perf_counter() - built.resumed_seconds
    with Live(str(out.live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        history = fit(recipe, built, live, started)
        final = final_model(built.trainer, history)
        log_summary(live, recipe, built, history, final)
        save_outputs(recipe, out, built, history, final)
        write_timings(out.timings, history, time.perf_counter() - started, device)
    if recipe.resume_dir is not None:
        resume.mark_complete(recipe.resume_dir, built.fingerprint,
                             [_saved(r) for r in history])
    return history



def fit(run: Recipe, built: BuiltRun, live: Live, started: float) -> list[EpochResult]:
    """Train the remaining epochs, logging each to ``live`` (a resumed run first logs the
    epochs before its interruption) and saving the resume state after each; ``started``:
    the ``perf_counter`` time the run would have started without interruptions."""
    trainer = built.trainer
    for result in trainer.history:  # a resumed run: the epochs before the interruption
        _log_epoch(live, result)
    _log_lr_steps(live, trainer.history)

    def on_epoch(result: EpochResult, is_best: bool) -> None:
        log.info("%s epoch %d%s: train loss %.4f, valid loss %.4f, valid lwlrap %.4f%s",
                 run.name, result.epoch, "" if result.phase == "train"
                 else f" ({result.phase})", result.train_loss, result.valid_loss,
                 result.valid_lwlrap, " (best)" if is_best else "")
        _log_epoch(live, result)
        _log_lr_steps(live, trainer.history)
        if run.resume_dir is not None:
            state = trainer.state_dict()
            state["seconds"] = time.perf_counter() - started
            resume.save_state(run.resume_dir, built.fingerprint, state)

    return trainer.run(on_epoch)


def log_summary(live: Live, run: Recipe, built: BuiltRun, history: list[EpochResult],
                final: FinalModel) -> None:
    """The dvclive summary of a finished run (best epoch, SWA, task, size); no wall time,
    which is in the timings file (:func:`write_timings`)."""
    best, swa = final.best, final.swa
    if swa is not None:
        live.summary["swa"] = json_safe({"valid_lwlrap": swa.valid_lwlrap,
                                         "valid_loss": swa.valid_loss})
    live.summary["best"] = json_safe({"epoch": best.epoch,
                                      "valid_lwlrap": best.valid_lwlrap,
                                      "train_loss": best.train_loss,
                                      "valid_loss": best.valid_loss})
    if _finite(best.valid_accuracy):
        live.summary["best"]["valid_accuracy"] = best.valid_accuracy
    live.summary["task"] = built.spec.task
    live.summary["epochs_run"] = len(history)
    live.summary["n_parameters"] = built.meta.n_parameters
    if run.cfg.overfit_batches:
        live.summary["overfit_final_loss"] = history[-1].train_loss
    live.sync()


def write_timings(path: Path | None, history: list[EpochResult], seconds: float,
                  device: torch.device) -> None:
    """The run's wall-clock times (``metrics/timings/train/<model>.json``): the whole run
    and each epoch, in seconds. Kept apart from the model and the curves, whose bits are
    the same on every machine while times are not (docs/reproducibility.md)."""
    if path is None:
        return
    write_json(path, {"train_seconds": round(seconds, 3), "device": str(device),
                      "epoch_seconds": [None if r.seconds is None else round(r.seconds, 3)
                                        for r in history]})


def save_outputs(run: Recipe, out: RunOutputs, built: BuiltRun, history: list[EpochResult],
                 final: FinalModel) -> None:
    """``model.pt`` (the final weights), ``first_epoch.pt`` and ``history.json``, written
    to ``out.model_dir`` as a whole (see :func:`train_model`)."""
    meta, first = built.meta, history[0]
    with atomic_dir(out.model_dir) as tmp:
        save_state_dict(tmp / CHECKPOINT_NAME, final.state,
                        meta.with_record(json_safe(final.record)))
        save_state_dict(tmp / FIRST_EPOCH_NAME, built.trainer.progress.first_state,
                        meta.with_record({"epoch": 1, "valid_lwlrap": first.valid_lwlrap}))
        write_json(tmp / HISTORY_NAME, history_json({
            "model": run.name, "task": built.spec.task, "best_epoch": final.record["epoch"],
            "layers": layer_names(built.trainer.model),  # model order of the per-layer records
            "epochs": [_saved(r) for r in history],
            "swa": _saved(final.swa) if final.swa is not None else None}))
