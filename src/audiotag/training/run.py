"""Train one registered model on a feature store, logging every epoch with dvclive."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from dvclive import Live
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.contracts.store import FEATURES_NAME
from audiotag.core.device import platform_record, set_threads
from audiotag.core.errors import ParamsError
from audiotag.core.io import atomic_dir, atomic_path, read_json, write_json
from audiotag.data.manifest import TARGET_PREFIX
from audiotag.features.crops import CropSeedSampler
from audiotag.features.store import FeatureSet, collate_clips
from audiotag.models import MODELS, create_model, list_models
from audiotag.training import distributed, resume
from audiotag.training.augment import SignalAugment
from audiotag.training.checkpoint import load_compatible, save_state_dict
from audiotag.training.config import TrainConfig
from audiotag.training.loop import EpochResult, Trainer
from audiotag.training.sampling import clip_sampler
from audiotag.training.tasks import TaskSpec, balanced_pos_weight, resolve_task, task_spec
from audiotag.training.utils import count_parameters, layer_names, seed_everything

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


def _worker_init(worker_id: int) -> None:  # one BLAS thread per loader worker
    import torch
    torch.set_num_threads(1)


def _loader(data, cfg: TrainConfig, *, shuffle: bool = False, generator=None,
            drop_last: bool = False, sampler=None, batch_size: int | None = None,
            device=None) -> DataLoader:
    """``train.pin_memory`` pins batches (faster copies to the GPU) only when ``device``
    is CUDA: elsewhere pinning costs time and torch warns."""
    workers = cfg.num_workers
    pin = cfg.pin_memory and device is not None and device.type == "cuda"
    return DataLoader(data, batch_size=batch_size or cfg.batch_size, shuffle=shuffle,
                      generator=generator, drop_last=drop_last, collate_fn=collate_clips,
                      num_workers=workers, worker_init_fn=_worker_init if workers else None,
                      sampler=sampler, persistent_workers=False, pin_memory=pin)


def check_model_accepts(name: str, kind: str) -> None:
    """Fail early when model ``name`` cannot take ``features.kind`` (e.g. a 2-D CNN on a raw
    waveform, whose "image" would be one band high and tens of thousands of frames long):
    the registry entry's ``input`` says what it takes."""
    if MODELS.get(name).accepts(kind):
        return
    if kind == "waveform":
        takers = [m for m in list_models() if MODELS.get(m).accepts("waveform")]
        raise ParamsError(f"features.kind=waveform: model {name!r} needs a time-frequency "
                          f"input; train it on another features.kind, or train a model "
                          f"that takes raw waveforms ({', '.join(takers)})")
    raise ParamsError(f"model {name!r} takes raw waveforms: set features.kind=waveform "
                      f"(it is {kind!r})")


def selected_targets(cfg: TrainConfig, data: FeatureSet) -> list[str]:
    """The ``targets_*`` columns a regression / multitask model learns, in output order:
    ``train.targets`` (names with or without the prefix), or every column of the store."""
    available = data.target_columns
    if cfg.targets is None:
        return available
    chosen = []
    for i, name in enumerate(cfg.targets):
        column = name if name.startswith(TARGET_PREFIX) else TARGET_PREFIX + name
        if column not in available:
            known = ", ".join(c.removeprefix(TARGET_PREFIX) for c in available) or "none"
            raise ParamsError(f"train.targets[{i}]: no regression target {name!r} in the "
                              f"feature store (its targets_* columns: {known})")
        chosen.append(column)
    if len(set(chosen)) != len(chosen):
        raise ParamsError("train.targets: a target is listed twice")
    return chosen


def describe_task(cfg: TrainConfig, data: FeatureSet) -> TaskSpec:
    """The task of this run: ``train.task`` (``auto`` resolved on the training clips) over
    the store's classes and the ``targets_*`` columns of ``train.targets``; a clear error
    when the data lack it."""
    counts = data.targets.sum(axis=1).astype(int).tolist()
    columns = selected_targets(cfg, data)
    task = resolve_task(cfg.task, counts, columns)
    single = task == "multitask" and bool(counts) and all(n == 1 for n in counts)
    softmax = task == "singlelabel" or single
    if task == "regression" and (cfg.loss != "bce" or cfg.pos_weight != "none"
                                 or cfg.sampler != "shuffle"):
        raise ParamsError("train.loss / train.pos_weight / train.sampler: task regression "
                          "has no classes (keep loss=bce, pos_weight=none, sampler=shuffle)")
    if cfg.pos_weight != "none" and softmax:
        raise ParamsError(f"train.pos_weight={cfg.pos_weight}: weights the positives of "
                          "sigmoid (multi-label) outputs; this task is single-label (softmax): "
                          "set it to none (train.sampler=balanced balances classes there)")
    pos_weight = (balanced_pos_weight(data.targets, cfg.pos_weight_max)
                  if cfg.pos_weight == "balanced" else ())
    try:
        spec = task_spec(task, len(data.classes), columns, cfg.label_smoothing,
                         cfg.regression_weight, single_label=single,
                         target_weights=tuple(cfg.target_weights or ()), loss=cfg.loss,
                         focal_gamma=cfg.focal_gamma, pos_weight=pos_weight)
    except ValueError as err:
        raise ParamsError(f"train.task={cfg.task}: {err}") from None
    if spec.n_targets:
        values = data.index[columns].apply(pd.to_numeric, errors="coerce")
        if not values.notna().to_numpy().any():
            raise ParamsError(f"train.task={task}: no training clip has a value in "
                              f"{', '.join(columns)}")
    return spec


@dataclass(frozen=True)
class ClipChoice:
    """The clips of a run when they are not the store's roles ``train`` and ``valid``: labels
    tables (``clip_id, labels, weight``) of the clips that train and of those that validate,
    among the store's clips with ``roles`` (a k-fold CV fold, :mod:`audiotag.training.cv`)."""

    roles: tuple[str, ...]
    train: pd.DataFrame
    valid: pd.DataFrame

    def digest(self) -> str:  # the resume fingerprint of a run on these clips
        text = self.train.to_csv(index=False) + self.valid.to_csv(index=False)
        return hashlib.sha256(text.encode()).hexdigest()


Labels = Path | pd.DataFrame | None  # a labels file, or a ClipChoice's table


def _train_clips(labels: Path | None, clips: ClipChoice | None) -> tuple[tuple[str, ...], Labels]:
    """Roles and labels of the clips that train: the store's ``train`` clips (with
    ``labels``, those of that labels file), or the ``clips`` chosen."""
    return (("train",), labels) if clips is None else (clips.roles, clips.train)


def _datasets(features_dir: Path, cfg: TrainConfig, labels: Path | None = None,
              clips: ClipChoice | None = None):
    """Training set (noisy flags, noisy clips weighted by ``train.noisy_weight``; with
    ``labels``, the clips, labels and weights of that labels file), validation set and the
    task, with items' ``y`` laid out for the task; ``clips`` replaces both sets' clips."""
    roles, train_labels = _train_clips(labels, clips)
    train_set = FeatureSet(features_dir, roles, train=True, with_noisy=True,
                           labels=train_labels)
    valid_set = (FeatureSet(features_dir, ("valid",)) if clips is None else
                 FeatureSet(features_dir, clips.roles, labels=clips.valid))
    for name, data in (("training", train_set), ("validation", valid_set)):
        if len(data) == 0:
            raise ValueError(f"{features_dir}: no {name} clips (check the split params)")
    spec = describe_task(cfg, train_set)
    columns = list(spec.targets)
    for data in (train_set, valid_set):
        data.select_outputs(spec.n_classes > 0, columns)
    if cfg.noisy_weight != 1.0:
        train_set.weights = train_set.weights * np.where(train_set.is_noisy > 0,
                                                         np.float32(cfg.noisy_weight),
                                                         np.float32(1.0))
    return train_set, valid_set, spec


def _loaders(features_dir: Path, train_set: FeatureSet, valid_set: FeatureSet, spec: TaskSpec,
             cfg: TrainConfig, generator, ctx: distributed.Context, seed: int,
             labels: Labels = None, device=None, roles: tuple[str, ...] = ("train",)):
    """Shuffled training loader and validation loader; with ``overfit_batches: N`` both
    are the same N fixed batches of training clips (deterministic crops, no shuffling)."""
    if cfg.overfit_batches:
        fixed = FeatureSet(features_dir, roles, with_noisy=True, labels=labels)
        fixed.select_outputs(spec.n_classes > 0, list(spec.targets))
        subset = Subset(fixed, range(min(len(fixed), cfg.overfit_batches * cfg.batch_size)))
        loader = _loader(subset, cfg, device=device)
        return loader, loader
    if ctx.enabled:  # each process takes its share of every (global) batch
        sampler = DistributedSampler(train_set, num_replicas=ctx.world, rank=ctx.rank,
                                     shuffle=True, seed=seed, drop_last=True)
        train = _loader(train_set, cfg, sampler=CropSeedSampler(sampler, generator),
                        drop_last=True, batch_size=cfg.batch_size // ctx.world, device=device)
        return train, _loader(valid_set, cfg, device=device)
    # each clip's random crops come from a seed drawn here, in the main process, from the
    # seeded `generator` (as the shuffle is): the same run whatever train.num_workers
    sampler = CropSeedSampler(clip_sampler(cfg.sampler, train_set.targets, generator),
                              generator)
    train = _loader(train_set, cfg, sampler=sampler, generator=generator,
                    drop_last=len(train_set) > cfg.batch_size,  # BatchNorm needs batch > 1
                    device=device)
    return train, _loader(valid_set, cfg, device=device)


def _finetune_loader(train_set: FeatureSet, cfg: TrainConfig, generator,
                     device=None) -> DataLoader | None:
    """``train.finetune_curated_epochs``: the training clips of the curated subset (not
    noisy), drawn as ``train.sampler`` says; None when off."""
    if not cfg.finetune_curated_epochs:
        return None
    curated = np.flatnonzero(train_set.is_noisy == 0)
    if not len(curated):
        raise ParamsError("train.finetune_curated_epochs: no curated training clips (every "
                          "training clip is from the noisy subset); set it to 0")
    if len(curated) == len(train_set):
        log.info("train.finetune_curated_epochs: no noisy training clips; the fine-tuning "
                 "epochs train on every clip")
    sampler = CropSeedSampler(clip_sampler(cfg.sampler, train_set.targets, generator,
                                           curated.tolist()), generator)
    return _loader(train_set, cfg, sampler=sampler, drop_last=len(curated) > cfg.batch_size,
                   device=device)


def signal_augment(cfg: TrainConfig, meta: dict[str, Any],
                   stats: dict[str, Any]) -> SignalAugment | None:
    """``train.aug_*`` for a store (``features.json`` ``meta``, ``stats.json``): gain and
    background mixing on raw waveforms or on log-power kinds (logmel, stft, stacked of
    those); a time shift on any kind of fixed-length features. None when all are off."""
    if not (cfg.aug_gain_db or cfg.aug_shift or cfg.aug_background):
        return None
    kind, config = meta["kind"], meta["config"]
    if meta.get("variable_length"):
        raise ParamsError("train.aug_gain_db / aug_shift / aug_background: beat-synchronous "
                          "features (features.beat_sync) have no fixed window; set them to 0")
    if kind == "waveform":
        domain = "waveform"
    elif all(part in ("logmel", "stft") for part in kind.split("+")):
        domain = "db" if config.get("to_db", True) else "ln"
    elif cfg.aug_gain_db or cfg.aug_background:
        raise ParamsError(f"train.aug_gain_db / aug_background: features.kind={kind} is not a "
                          "waveform or log-power spectrogram (logmel, stft); set them to 0 "
                          "(train.aug_shift works on any kind)")
    else:
        domain = "db"  # a shift only: the domain does not matter
    return SignalAugment(domain, torch.tensor(stats["shift"], dtype=torch.float32),
                         torch.tensor(stats["scale"], dtype=torch.float32),
                         cfg.aug_gain_db, cfg.aug_shift, cfg.aug_background,
                         cfg.aug_background_db)


def _score_loader(features_dir: Path, spec: TaskSpec, cfg: TrainConfig, seed: int,
                  labels: Labels = None, device=None,
                  roles: tuple[str, ...] = ("train",)) -> DataLoader | None:
    """``train.train_score_clips`` training clips (a seeded choice, the same every epoch)
    with their evaluation crops: scoring them after each epoch gives a train lwlrap /
    accuracy curve beside the validation one at a small, fixed cost. None when off."""
    if not cfg.train_score_clips or cfg.overfit_batches:
        return None
    fixed = FeatureSet(features_dir, roles, labels=labels)
    fixed.select_outputs(spec.n_classes > 0, list(spec.targets))
    chosen = np.random.default_rng(seed).permutation(len(fixed))[:cfg.train_score_clips]
    return _loader(Subset(fixed, sorted(chosen.tolist())), cfg, device=device)


def init_from_checkpoints(model, name: str, cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """``train.init_from``: one checkpoint's compatible layers, or with a mapping one
    checkpoint per branch of a model registered with ``init_branches`` (branch -> source
    prefix -> own prefix; mixnet: a cnn1d trained on waveforms for ``wave``, a cnn2d for
    ``spec``). Returns ``(loaded, skipped)`` tensor names of ``model``."""
    if isinstance(cfg.init_from, str):
        return load_compatible(model, cfg.init_from, cfg.freeze_init)
    branches = MODELS.get(name).init_branches
    if not branches:
        raise ParamsError(f"train.init_from: {name} has no branches; give one checkpoint "
                          "path instead of a mapping")
    loaded: list[str] = []
    for branch, path in (cfg.init_from or {}).items():
        if branch not in branches:
            raise ParamsError(f"train.init_from.{branch}: {name} has the branches "
                              f"{', '.join(branches)}")
        got, _ = load_compatible(model, path, cfg.freeze_init, rename=dict(branches[branch]),
                                 where=f"train.init_from.{branch}")
        loaded += got
    return loaded, [k for k in model.state_dict() if k not in set(loaded)]


def train_model(name: str, model_params: dict[str, Any], features_dir: str | os.PathLike[str],
                model_dir: str | os.PathLike[str], live_dir: str | os.PathLike[str],
                cfg: TrainConfig, seed: int,
                resume_dir: str | os.PathLike[str] | None = None,
                stop_after: int | None = None,
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
    :mod:`audiotag.training.resume`); ``stop_after`` ends the run after that many epochs
    without writing outputs (to simulate a killed run in tests). ``labels``: a labels file
    (label cleaning's ``data/clean/labels.csv``) that gives the training clips, their
    labels and loss weights instead of the store's. ``clips``: the clips that train and
    those that validate instead of the store's ``train`` and ``valid`` roles (a k-fold CV
    fold; ``labels`` is then not read).
    """
    features_dir = Path(features_dir)
    kind = read_json(features_dir / FEATURES_NAME)["kind"]
    check_model_accepts(name, kind)
    if cfg.spec_augment and kind == "waveform":
        raise ParamsError("train.specaug_*: SpecAugment masks spectrogram bands and frames; "
                          "features.kind=waveform has none (set the mask counts to 0)")
    run = RunInputs(name, model_params, features_dir, Path(model_dir), Path(live_dir), cfg,
                    seed, kind, Path(labels) if labels is not None else None,
                    Path(resume_dir) if resume_dir is not None else None, stop_after, clips,
                    Path(timings) if timings is not None else None)
    set_threads(cfg.threads)
    ctx, device = distributed.setup(cfg.device)
    try:
        history = _train(run, ctx, device)
    except BaseException:
        distributed.teardown(ctx, wait=False)  # the other processes fail on their own
        raise
    distributed.teardown(ctx)
    return history


@dataclass(frozen=True)
class RunInputs:
    """What one training run is given (see :func:`train_model`)."""

    name: str  # registered model
    model_params: dict[str, Any]  # its validated ``models.<name>`` settings
    features_dir: Path
    model_dir: Path
    live_dir: Path
    cfg: TrainConfig
    seed: int
    kind: str  # features.kind of the store
    labels: Path | None  # a labels file replacing the store's training labels
    resume_dir: Path | None
    stop_after: int | None
    clips: ClipChoice | None = None  # instead of the store's train and valid roles
    timings: Path | None = None  # where the wall-clock times go (:func:`write_timings`)


@dataclass(frozen=True)
class BuiltRun:
    """A run ready to fit: its trainer (with any resumed state loaded), task, checkpoint
    metadata and resume fingerprint."""

    trainer: Trainer
    spec: TaskSpec
    meta: CheckpointMeta  # what every saved checkpoint carries
    fingerprint: str  # resume state of exactly this run (see audiotag.training.resume)
    resumed_seconds: float  # training time before an interruption (0: a fresh run)


@dataclass(frozen=True)
class FinalModel:
    """The weights a finished run keeps: the best epoch's, or the SWA average."""

    state: dict[str, torch.Tensor]
    record: dict[str, Any]  # epoch, valid_lwlrap, valid_loss (and swa: True)
    best: EpochResult  # the best training epoch (also with SWA)
    swa: EpochResult | None


def _train(run: RunInputs, ctx: distributed.Context, device: torch.device) -> list[EpochResult]:
    built = build_run(run, ctx, device)
    if not ctx.main:  # replicas train in step with process 0, which alone writes outputs
        return built.trainer.run(lambda result, is_best: None, run.stop_after)
    started = time.perf_counter() - built.resumed_seconds
    with Live(str(run.live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        history = fit(run, built, live, started)
        if not built.trainer.finished:
            return history
        final = final_model(built.trainer, history)
        log_summary(live, run, built, history, final)
        save_outputs(run, built, history, final)
        write_timings(run.timings, history, time.perf_counter() - started, device)
    if run.resume_dir is not None:
        resume.mark_complete(run.resume_dir, built.fingerprint, [_saved(r) for r in history])
    return history


def checkpoint_meta(run: RunInputs, spec: TaskSpec, train_set: FeatureSet,
                    model: torch.nn.Module, device: torch.device) -> CheckpointMeta:
    """What every checkpoint of the run carries beside its weights (the kept epoch's
    record is added when it is saved)."""
    return CheckpointMeta(
        model_name=run.name, model_params=run.model_params, num_classes=spec.n_outputs,
        n_mels=train_set.n_mels, task=spec.task, single_label=spec.single_label,
        classes=train_set.classes, targets=list(spec.targets),
        features=train_set.meta["config"], stats=train_set.stats,
        n_parameters=count_parameters(model),
        platform=platform_record(device))  # explains a difference


def build_run(run: RunInputs, ctx: distributed.Context, device: torch.device) -> BuiltRun:
    """Seed, datasets, loaders, the model (``train.init_from`` loaded, DDP-wrapped with
    several processes), its checkpoint metadata and the trainer, resumed from
    ``run.resume_dir`` when a state of this very run is there."""
    name, cfg = run.name, run.cfg
    roles, labels = _train_clips(run.labels, run.clips)
    generator = seed_everything(run.seed)
    train_set, valid_set, spec = _datasets(run.features_dir, cfg, run.labels, run.clips)
    train_loader, valid_loader = _loaders(run.features_dir, train_set, valid_set, spec, cfg,
                                          generator, ctx, run.seed, labels, device, roles)
    model = create_model(name, num_classes=spec.n_outputs, n_mels=train_set.n_mels,
                         **run.model_params)
    meta = checkpoint_meta(run, spec, train_set, model, device)
    if cfg.init_from:
        loaded, skipped = init_from_checkpoints(model, name, cfg)
        log.info("%s: %d tensors loaded from %s%s, %d left as initialised (%s)", name,
                 len(loaded), cfg.init_from, " and frozen" if cfg.freeze_init else "",
                 len(skipped), ", ".join(skipped[:4]) + (" ..." if len(skipped) > 4 else ""))
        meta = replace(meta, init_from=cfg.init_from)
    model_spec = MODELS.get(name)
    parallel = None
    if ctx.enabled:
        if model_spec.two_phase:
            raise ParamsError(f"train.processes={cfg.processes}: {name} trains in two phases, "
                              "which DistributedDataParallel does not support; use 1 process")
        model.to(device)
        parallel = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        meta = replace(meta, processes=ctx.world)
    trainer = Trainer(model, spec, cfg, device, train_loader, valid_loader, generator,
                      run.seed, two_phase=model_spec.two_phase,
                      spectral=run.kind != "waveform", overfit=cfg.overfit_batches > 0,
                      parallel=parallel,
                      score_loader=_score_loader(run.features_dir, spec, cfg, run.seed, labels,
                                                device, roles),
                      finetune_loader=(None if cfg.overfit_batches else
                                       _finetune_loader(train_set, cfg, generator, device)),
                      signal_augment=signal_augment(cfg, train_set.meta, train_set.stats),
                      crop_aggregate=valid_set.config.eval_aggregate)
    train_params = cfg.model_dump()
    if run.clips is not None:  # other clips, another run
        train_params["clips"] = run.clips.digest()
    elif run.labels is not None:  # other labels, another run
        train_params["labels_file"] = resume.file_digest(run.labels)
    fp = resume.fingerprint(name, run.model_params, train_params, run.seed, run.features_dir)
    saved = resume.load_state(run.resume_dir, fp)
    if saved is not None:
        trainer.load_state_dict(saved)
    log.info("%s: task %s, %d parameters, %d train / %d valid clips, device %s%s", name,
             spec.task, meta.n_parameters, len(train_loader.dataset),
             len(valid_loader.dataset), device,
             f", process {ctx.rank + 1} of {ctx.world}" if ctx.enabled else "")
    return BuiltRun(trainer, spec, meta, fp, (saved or {}).get("seconds", 0.0))


def fit(run: RunInputs, built: BuiltRun, live: Live, started: float) -> list[EpochResult]:
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

    return trainer.run(on_epoch, run.stop_after)


def final_model(trainer: Trainer, history: list[EpochResult]) -> FinalModel:
    """The best training epoch's weights, or (``train.swa_start_epoch``) the SWA average
    with recomputed batch-norm statistics."""
    swa = trainer.finish_swa()
    best = max((r for r in history if r.phase in ("train", "finetune")),
               key=lambda r: r.score)
    if swa is None:
        return FinalModel(trainer.best_state,
                          {"epoch": best.epoch, "valid_lwlrap": best.valid_lwlrap,
                           "valid_loss": best.valid_loss}, best, None)
    state = {k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
    return FinalModel(state, {"epoch": swa.epoch, "valid_lwlrap": swa.valid_lwlrap,
                              "valid_loss": swa.valid_loss, "swa": True}, best, swa)


def log_summary(live: Live, run: RunInputs, built: BuiltRun, history: list[EpochResult],
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


def save_outputs(run: RunInputs, built: BuiltRun, history: list[EpochResult],
                 final: FinalModel) -> None:
    """``model.pt`` (the final weights), ``first_epoch.pt`` and ``history.json``, written
    to ``run.model_dir`` as a whole (see :func:`train_model`)."""
    meta, first = built.meta, history[0]
    with atomic_dir(run.model_dir) as tmp:
        save_state_dict(tmp / CHECKPOINT_NAME, final.state,
                        meta.with_record(json_safe(final.record)))
        save_state_dict(tmp / FIRST_EPOCH_NAME, built.trainer.first_state,
                        meta.with_record({"epoch": 1, "valid_lwlrap": first.valid_lwlrap}))
        write_json(tmp / HISTORY_NAME, history_json({
            "model": run.name, "task": built.spec.task, "best_epoch": final.record["epoch"],
            "layers": layer_names(built.trainer.model),  # model order of the per-layer records
            "epochs": [_saved(r) for r in history],
            "swa": _saved(final.swa) if final.swa is not None else None}))
