"""The one recipe of a training run: :func:`build_run` assembles, from params, the datasets,
loaders, model, checkpoint metadata and :class:`~audiotag.training.loop.Trainer` of every
training in the pipeline.

Three callers, one assembly; what differs between them is which clips train and
validate (:class:`Recipe`'s ``clips``), never a second code path:

- ``train@<model>`` (:func:`audiotag.training.run.train_model`): the store's ``train`` clips
  with label cleaning's labels file (:class:`StoreClips`), validation on its ``valid``
  clips, the best epoch picked on ``features.eval_aggregate`` of the windows;
- ``cv_fold@<model>-<fold>``: a fold's clips (:class:`ClipChoice`);
- label cleaning's detector (:mod:`audiotag.training.oof`): some of the store's ``train``
  clips (``StoreClips(rows=...)``), everything else as ``train@<model>``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.contracts.store import FEATURES_NAME
from audiotag.core.device import platform_record
from audiotag.core.errors import ParamsError
from audiotag.core.io import read_json
from audiotag.data.manifest import TARGET_PREFIX
from audiotag.features.crops import CropSeedSampler
from audiotag.features.store import FeatureSet, collate_clips, read_labels
from audiotag.models import MODELS, create_model, list_models
from audiotag.models.phases import training_phases
from audiotag.training import distributed, resume
from audiotag.training.augment import BatchAugment, SignalAugment, SpecAugmentMasks
from audiotag.training.checkpoint import load_compatible
from audiotag.training.config import TrainConfig
from audiotag.training.loop import Loaders, Rules, Trainer
from audiotag.training.sampling import clip_sampler
from audiotag.training.tasks import TaskSpec, balanced_pos_weight, resolve_task, task_spec
from audiotag.training.utils import count_parameters, seed_everything

log = logging.getLogger(__name__)

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


Outputs = tuple[bool, list[str]]  # items' y: class targets or not, then regression columns


def outputs_of(spec: TaskSpec) -> Outputs:
    """Items' ``y`` for ``spec``: the class targets (if any), then its regression columns."""
    return spec.n_classes > 0, list(spec.targets)


@dataclass(frozen=True)
class StoreClips:
    """The store's own roles: its ``train`` clips train (with ``labels``, the clips, labels
    and weights of that labels file; with ``rows``, only those at these positions among
    them), its ``valid`` clips validate."""

    labels: Path | None = None
    rows: tuple[int, ...] | None = None
    roles: tuple[str, ...] = ("train",)

    @property
    def train_labels(self) -> pd.DataFrame | None:
        return read_labels(self.labels) if self.labels is not None else None

    def valid_set(self, features_dir: Path, outputs: Outputs) -> FeatureSet:
        return FeatureSet(features_dir, ("valid",), outputs=outputs)

    def resume_key(self) -> dict[str, Any]:
        """What sets this run apart from another on the same params (resume fingerprint)."""
        key: dict[str, Any] = {}
        if self.labels is not None:  # other labels, another run
            key["labels_file"] = resume.file_digest(self.labels)
        if self.rows is not None:
            key["rows"] = hashlib.sha256(np.asarray(self.rows).tobytes()).hexdigest()
        return key


@dataclass(frozen=True)
class ClipChoice:
    """The clips of a run when they are not the store's roles ``train`` and ``valid``: labels
    tables (``clip_id, labels, weight``) of the clips that train and of those that validate,
    among the store's clips with ``roles`` (a k-fold CV fold, :mod:`audiotag.training.cv`)."""

    roles: tuple[str, ...]
    train: pd.DataFrame
    valid: pd.DataFrame
    rows = None  # every clip of the train table trains

    @property
    def train_labels(self) -> pd.DataFrame:
        return self.train

    def valid_set(self, features_dir: Path, outputs: Outputs) -> FeatureSet:
        return FeatureSet(features_dir, self.roles, labels=self.valid, outputs=outputs)

    def digest(self) -> str:
        text = self.train.to_csv(index=False) + self.valid.to_csv(index=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def resume_key(self) -> dict[str, Any]:
        return {"clips": self.digest()}  # other clips, another run


Clips = StoreClips | ClipChoice


@dataclass(frozen=True)
class Recipe:
    """Everything one training run is made from (see :func:`build_run`)."""

    name: str  # registered model
    model_params: dict[str, Any]  # its validated ``models.<name>`` settings
    features_dir: Path
    cfg: TrainConfig
    seed: int
    clips: Clips = StoreClips()  # which clips train and which validate
    resume_dir: Path | None = None  # continue an interrupted run saved there


@dataclass(frozen=True)
class BuiltRun:
    """A run ready to fit: its trainer (with any resumed state loaded), task, checkpoint
    metadata and resume fingerprint."""

    trainer: Trainer
    spec: TaskSpec
    meta: CheckpointMeta  # what every saved checkpoint carries
    fingerprint: str  # resume state of exactly this run ("" without a resume_dir)
    resumed_seconds: float  # training time before an interruption (0: a fresh run)


def _datasets(recipe: Recipe) -> tuple[FeatureSet, FeatureSet, TaskSpec]:
    """Training set (noisy flags; noisy clips weighted by ``train.noisy_weight``),
    validation set and the task read off the training clips, items' ``y`` laid out for it."""
    store, clips, cfg = recipe.features_dir, recipe.clips, recipe.cfg
    train_set = FeatureSet(store, clips.roles, train=True, labels=clips.train_labels,
                           noisy_weight=cfg.noisy_weight)
    if len(train_set) == 0:
        raise ValueError(f"{store}: no training clips (check the split params)")
    spec = describe_task(cfg, train_set)
    valid_set = clips.valid_set(store, outputs_of(spec))
    if len(valid_set) == 0:
        raise ValueError(f"{store}: no validation clips (check the split params): the best "
                         "epoch is picked on them")
    return train_set.with_outputs(*outputs_of(spec)), valid_set, spec


def _fixed_set(recipe: Recipe, spec: TaskSpec) -> FeatureSet:
    """The training clips with evaluation crops, unshuffled (overfit and score loaders)."""
    clips = recipe.clips
    return FeatureSet(recipe.features_dir, clips.roles, labels=clips.train_labels,
                      outputs=outputs_of(spec))


def _loaders(recipe: Recipe, train_set: FeatureSet, valid_set: FeatureSet, spec: TaskSpec,
             generator: torch.Generator, ctx: distributed.Context,
             device: torch.device) -> tuple[DataLoader, DataLoader]:
    """Shuffled (or drawn) training loader and validation loader; with
    ``overfit_batches: N`` both are the same N fixed batches of training clips
    (deterministic crops, no shuffling)."""
    cfg, rows = recipe.cfg, recipe.clips.rows
    if cfg.overfit_batches:
        fixed = _fixed_set(recipe, spec)
        subset = Subset(fixed, range(min(len(fixed), cfg.overfit_batches * cfg.batch_size)))
        loader = _loader(subset, cfg, device=device)
        return loader, loader
    if ctx.enabled:  # each process takes its share of every (global) batch
        sampler = DistributedSampler(train_set, num_replicas=ctx.world, rank=ctx.rank,
                                     shuffle=True, seed=recipe.seed, drop_last=True)
        train = _loader(train_set, cfg, sampler=CropSeedSampler(sampler, generator),
                        drop_last=True, batch_size=cfg.batch_size // ctx.world, device=device)
        return train, _loader(valid_set, cfg, device=device)
    # each clip's random crops come from a seed drawn here, in the main process, from the
    # seeded `generator` (as the shuffle is): the same run whatever train.num_workers
    sampler = CropSeedSampler(clip_sampler(cfg.sampler, train_set.targets, generator, rows),
                              generator)
    n = len(train_set) if rows is None else len(rows)
    train = _loader(train_set, cfg, sampler=sampler,
                    generator=generator,
                    drop_last=n > cfg.batch_size,  # BatchNorm needs batch > 1
                    device=device)
    return train, _loader(valid_set, cfg, device=device)


def _finetune_loader(recipe: Recipe, train_set: FeatureSet, generator: torch.Generator,
                     device: torch.device) -> DataLoader | None:
    """``train.finetune_curated_epochs``: the training clips of the curated subset (not
    noisy), drawn as ``train.sampler`` says; None when off."""
    cfg, rows = recipe.cfg, recipe.clips.rows
    if not cfg.finetune_curated_epochs or cfg.overfit_batches:
        return None
    candidates = np.arange(len(train_set)) if rows is None else np.asarray(rows, dtype=int)
    curated = candidates[train_set.is_noisy[candidates] == 0]
    if not len(curated):
        raise ParamsError("train.finetune_curated_epochs: no curated training clips (every "
                          "training clip is from the noisy subset); set it to 0")
    if len(curated) == len(candidates):
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




def _score_loader(recipe: Recipe, spec: TaskSpec, device: torch.device) -> DataLoader | None:
    """``train.train_score_clips`` training clips (a seeded choice, the same every epoch)
    with their evaluation crops: scoring them after each epoch gives a train lwlrap /
    accuracy curve beside the validation one at a small, fixed cost. None when off."""
    cfg = recipe.cfg
    if not cfg.train_score_clips or cfg.overfit_batches:
        return None
    fixed = _fixed_set(recipe, spec)
    chosen = np.random.default_rng(recipe.seed).permutation(len(fixed))[:cfg.train_score_clips]
    return _loader(Subset(fixed, sorted(chosen.tolist())), cfg, device=device)


def _rules(recipe: Recipe, train_set: FeatureSet, valid_set: FeatureSet) -> Rules:
    """How the task phase trains: augmentation, L_soft and early stopping are off in the
    ``overfit_batches`` sanity check; SWA never stops early (the average needs its epochs)."""
    cfg = recipe.cfg
    signal = signal_augment(cfg, train_set.meta, train_set.stats)
    masks = (SpecAugmentMasks(cfg.specaug_freq_masks, cfg.specaug_freq_width,
                              cfg.specaug_time_masks, cfg.specaug_time_width)
             if cfg.spec_augment else None)
    overfit = cfg.overfit_batches > 0
    return Rules(augment=None if overfit else BatchAugment(signal, cfg.mixup_alpha, masks),
                 lsoft_beta=1.0 if overfit else cfg.lsoft_beta,
                 patience=None if overfit or cfg.swa else cfg.patience,
                 select_on=valid_set.config.eval_aggregate)


def init_from_checkpoints(model, name: str, cfg: TrainConfig) -> tuple[list[str], list[str]]:
    """``train.init_from``: one checkpoint's compatible layers, or with a mapping one
    checkpoint per branch of a model registered with ``init_branches`` (branch -> source
    prefix -> own prefix; mixnet: a cnn1d trained on waveforms for ``wave``, a cnn2d for
    ``spec``). Returns ``(loaded, skipped)`` tensor names of ``model``."""
    init = cfg.init_from
    if init is None:
        return [], list(model.state_dict())
    if init.path is not None:
        return load_compatible(model, init.path, cfg.freeze_init)
    branches = MODELS.get(name).init_branches
    if not branches:
        raise ParamsError(f"train.init_from: {name} has no branches; give one checkpoint "
                          "path instead of a mapping")
    loaded: list[str] = []
    for branch, path in (init.branches or {}).items():
        if branch not in branches:
            raise ParamsError(f"train.init_from.{branch}: {name} has the branches "
                              f"{', '.join(branches)}")
        got, _ = load_compatible(model, path, cfg.freeze_init, rename=dict(branches[branch]),
                                 where=f"train.init_from.{branch}")
        loaded += got
    return loaded, [k for k in model.state_dict() if k not in set(loaded)]



def check_store(name: str, cfg: TrainConfig, features_dir: Path) -> None:
    """Refuse a model or a setting that the store's ``features.kind`` cannot serve."""
    kind = read_json(features_dir / FEATURES_NAME)["kind"]
    check_model_accepts(name, kind)
    if cfg.spec_augment and kind == "waveform":
        raise ParamsError("train.specaug_*: SpecAugment masks spectrogram bands and frames; "
                          "features.kind=waveform has none (set the mask counts to 0)")


def _model(recipe: Recipe, spec: TaskSpec, train_set: FeatureSet, device: torch.device
           ) -> tuple[torch.nn.Module, CheckpointMeta]:
    """The network (``train.init_from`` loaded) and the metadata every checkpoint carries."""
    name, cfg = recipe.name, recipe.cfg
    # n_mels: what models and checkpoints call the feature dimension (1 for a waveform)
    model = create_model(name, num_classes=spec.n_outputs, n_mels=train_set.dim,
                         **recipe.model_params)
    meta = CheckpointMeta(
        model_name=name, model_params=recipe.model_params, num_classes=spec.n_outputs,
        n_mels=train_set.dim, task=spec.task, single_label=spec.single_label,
        classes=train_set.classes, targets=list(spec.targets),
        features=train_set.meta["config"], stats=train_set.stats,
        n_parameters=count_parameters(model),
        platform=platform_record(device))  # explains a difference
    if cfg.init_from:
        loaded, skipped = init_from_checkpoints(model, name, cfg)
        log.info("%s: %d tensors loaded from %s%s, %d left as initialised (%s)", name,
                 len(loaded), cfg.init_from.model_dump(),
                 " and frozen" if cfg.freeze_init else "",
                 len(skipped), ", ".join(skipped[:4]) + (" ..." if len(skipped) > 4 else ""))
        meta = replace(meta, init_from=cfg.init_from.model_dump())  # as params.yaml spells it
    return model, meta


def _parallel(model: torch.nn.Module, recipe: Recipe, ctx: distributed.Context,
              device: torch.device) -> DistributedDataParallel | None:
    """The DistributedDataParallel wrapper with several processes (None with one)."""
    if not ctx.enabled:
        return None
    if len(training_phases(model)) > 1:
        raise ParamsError(f"train.processes={recipe.cfg.processes}: {recipe.name} trains in "
                          "several phases, which DistributedDataParallel does not support; "
                          "use 1 process")
    model = distributed.sync_batchnorm(model, recipe.cfg.sync_batchnorm, device).to(device)
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def build_run(recipe: Recipe, ctx: distributed.Context, device: torch.device) -> BuiltRun:
    """Seed, datasets, loaders, the model (``train.init_from`` loaded, DDP-wrapped with
    several processes), its checkpoint metadata and the trainer, resumed from
    ``recipe.resume_dir`` when a state of this very run is there."""
    name, cfg = recipe.name, recipe.cfg
    check_store(name, cfg, recipe.features_dir)
    generator = seed_everything(recipe.seed)
    train_set, valid_set, spec = _datasets(recipe)
    train_loader, valid_loader = _loaders(recipe, train_set, valid_set, spec, generator, ctx,
                                          device)
    model, meta = _model(recipe, spec, train_set, device)
    parallel = _parallel(model, recipe, ctx, device)
    if parallel is not None:
        meta = replace(meta, processes=ctx.world)
    loaders = Loaders(train_loader, valid_loader, _score_loader(recipe, spec, device),
                      _finetune_loader(recipe, train_set, generator, device))
    trainer = Trainer(model, spec, cfg, device, loaders, _rules(recipe, train_set, valid_set),
                      recipe.seed, generator, parallel)
    fp, saved = "", None
    if recipe.resume_dir is not None:
        train_params = {**cfg.model_dump(), **recipe.clips.resume_key()}
        fp = resume.fingerprint(name, recipe.model_params, train_params, recipe.seed,
                                recipe.features_dir)
        saved = resume.load_state(recipe.resume_dir, fp)
    if saved is not None:
        trainer.load_state_dict(saved)
    log.info("%s: task %s, %d parameters, %d train / %d valid clips, device %s%s", name,
             spec.task, meta.n_parameters, len(train_loader.sampler),
             len(valid_loader.dataset), device,
             f", process {ctx.rank + 1} of {ctx.world}" if ctx.enabled else "")
    return BuiltRun(trainer, spec, meta, fp, (saved or {}).get("seconds", 0.0))
