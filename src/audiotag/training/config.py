"""The ``train`` group: task, optimiser, schedule, augmentation, SWA, noisy-label handling,
device, resume and transfer learning; ``train.models`` are checked against the registry."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from audiotag.contracts.models import MODEL_TRAIN, check_model_name
from audiotag.core.errors import ParamsError
from audiotag.core.params import Strict, parse_group


class InitFrom(Strict):
    """``train.init_from`` parsed: one checkpoint for the whole model (``path``; params.yaml
    spells it as a string) or one per branch of a model with branches (``branches``:
    branch -> checkpoint path; spelt as a mapping). Dumps back to its spelling."""

    path: str | None = None
    branches: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> InitFrom:
        if (self.path is None) == (self.branches is None):
            raise ValueError("init_from: give a checkpoint path or a mapping branch -> path")
        return self

    @model_serializer
    def _spelling(self) -> str | dict[str, str] | None:
        return self.path if self.path is not None else self.branches


class TrainConfig(Strict):
    """The ``train@<model>`` stages (``audiotag.training``): task, optimiser, schedule,
    augmentation, SWA, noisy-label handling, device, resume and transfer learning."""

    models: list[str] = Field(min_length=1)
    task: Literal["auto", "multilabel", "singlelabel", "regression", "multitask"] = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # singlelabel / single-label multitask
    regression_weight: float = Field(1.0, ge=0)  # multitask: weight of the regression MSE
    targets: list[str] | None = None  # targets_* columns learnt (prefix optional); None: all
    target_weights: list[float] | None = None  # per name in targets: scales its squared error
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(16, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(2e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(1e-4, ge=0)
    scheduler: Literal["constant", "cosine", "onecycle", "cyclic"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    cycle_epochs: float = Field(2.0, gt=0)  # cyclic: length of one triangle
    grad_clip_norm: float = Field(0.0, ge=0)  # 0: no clipping
    mixup_alpha: float = Field(0.0, ge=0)  # 0: no mixup
    specaug_freq_masks: int = Field(0, ge=0)
    specaug_freq_width: int = Field(8, ge=0)
    specaug_time_masks: int = Field(0, ge=0)
    specaug_time_width: int = Field(20, ge=0)
    swa_start_epoch: int = Field(0, ge=0)  # 0: no stochastic weight averaging
    swa_lr: float | None = Field(None, gt=0)  # None: the learning rate when SWA starts
    noisy_weight: float = Field(1.0, ge=0)  # loss weight of noisy-subset clips
    lsoft_beta: float = Field(0.7, ge=0, le=1)  # 1: plain loss on noisy clips
    patience: int = Field(5, ge=1)
    ema_decay: float = Field(0.0, ge=0, lt=1)  # 0: no weight EMA
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    loss: Literal["bce", "focal"] = "bce"  # classification loss (bce: BCE or softmax CE)
    focal_gamma: float = Field(2.0, ge=0)  # loss=focal only
    pos_weight: Literal["none", "balanced"] = "none"  # sigmoid (multi-label) outputs only
    pos_weight_max: float = Field(10.0, gt=0)  # pos_weight=balanced: upper clip
    aug_gain_db: float = Field(0.0, ge=0)  # random gain in [-x, x] dB per clip; 0: off
    aug_shift: float = Field(0.0, ge=0, le=1)  # circular time shift, fraction of the window
    aug_background: float = Field(0.0, ge=0, le=1)  # probability of a background clip
    aug_background_db: float = Field(10.0, ge=0)  # the background's least attenuation (dB)
    finetune_curated_epochs: int = Field(0, ge=0)  # more epochs on curated clips only
    finetune_lr: float | None = Field(None, gt=0)  # None: train.lr
    amp: bool = False  # mixed precision (CUDA only)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    num_workers: int = Field(0, ge=0)
    pin_memory: bool = False  # pinned loader batches (CUDA only: faster host-to-GPU copies)
    threads: int = Field(1, ge=0)  # torch threads of the training process; 0: torch's default
    processes: int = Field(1, ge=1)  # >1: DistributedDataParallel over this many processes
    nodes: int = Field(1, ge=1)  # >1: machines, each running `processes`, via rendezvous
    rdzv_endpoint: str | None = Field(None, pattern=r"^[^\s:]+:\d+$")  # host:port (nodes > 1)
    sync_batchnorm: bool = False  # >1 process: BatchNorm statistics over the global batch
    max_restarts: int = Field(0, ge=0)  # >1 process: torchrun restarts a failed job this often
    overfit_batches: int = Field(0, ge=0)  # >0: sanity check on this many fixed batches
    train_score_clips: int = Field(64, ge=0)  # fixed training clips scored per epoch; 0: off
    # checkpoint (model.pt) whose compatible layers are loaded, or one per branch of a
    # model with branches (mixnet: {wave: <cnn1d model.pt>, spec: <cnn2d model.pt>})
    init_from: InitFrom | None = None
    freeze_init: bool = False  # freeze the layers loaded from init_from

    @field_validator("init_from", mode="before")
    @classmethod
    def _init_from_spelling(cls, value: Any) -> Any:
        """A path -> ``InitFrom(path=...)``, a mapping -> ``InitFrom(branches=...)``; an
        empty one -> None (nothing to load)."""
        if isinstance(value, InitFrom) or value is None:
            return value
        if not value:
            return None
        if isinstance(value, str):
            return InitFrom(path=value)
        if isinstance(value, dict):
            return InitFrom(branches=value)
        raise ValueError("init_from: a checkpoint path, or a mapping branch -> checkpoint "
                         f"path; got {type(value).__name__}")

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.swa_start_epoch > self.epochs:
            raise ValueError(f"swa_start_epoch ({self.swa_start_epoch}) must be <= epochs "
                             f"({self.epochs}); 0 turns SWA off")
        if self.ema_decay and self.swa:
            raise ValueError("ema_decay and swa_start_epoch both average weights: set one "
                             "of them to 0")
        if self.finetune_curated_epochs and self.swa:
            raise ValueError("finetune_curated_epochs after swa_start_epoch is not supported "
                             "(the SWA average ends the run): set one of them to 0")
        if self.finetune_curated_epochs and self.overfit_batches:
            raise ValueError("finetune_curated_epochs with overfit_batches: the sanity check "
                             "trains on fixed batches only; set one of them to 0")
        if self.finetune_curated_epochs and self.processes * self.nodes > 1:
            raise ValueError("finetune_curated_epochs needs one process (processes=1, nodes=1)")
        if self.sampler == "balanced" and self.processes * self.nodes > 1:
            raise ValueError("sampler=balanced needs one process (processes=1, nodes=1): "
                             "DistributedDataParallel shards a plain shuffle")
        if self.freeze_init and not self.init_from:
            raise ValueError("freeze_init needs init_from (a checkpoint to load)")
        if self.target_weights is not None:
            if self.targets is None or len(self.target_weights) != len(self.targets):
                raise ValueError("target_weights: one weight per name in train.targets "
                                 f"({self.targets or 'not set: list the targets'})")
            if min(self.target_weights) < 0 or not any(self.target_weights):
                raise ValueError("target_weights must be >= 0, at least one above 0")
        if self.targets is not None and not self.targets:
            raise ValueError("targets: list at least one targets_* column, or null for all")
        world = self.processes * self.nodes
        if self.batch_size < world:
            raise ValueError(f"batch_size ({self.batch_size}) is the global batch, split over "
                             f"processes x nodes ({world}): it must be at least that")
        if self.batch_size % world:  # each process takes batch_size // world: clips are lost
            raise ValueError(f"train.batch_size ({self.batch_size}) is not divisible by "
                             f"train.processes x train.nodes ({world}): each process would "
                             f"take {self.batch_size // world}, a global batch of "
                             f"{self.batch_size // world * world}; use a multiple of {world}")
        if (self.sync_batchnorm or self.max_restarts) and world == 1:
            raise ValueError("sync_batchnorm and max_restarts act on a multi-process run "
                             "(processes x nodes > 1); with one process leave them off")
        if self.nodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"nodes={self.nodes} needs train.rdzv_endpoint, the host:port of the "
                             "rendezvous (a port on one of the nodes, the same on every node)")
        return self

    @property
    def swa(self) -> bool:
        return self.swa_start_epoch > 0

    @property
    def spec_augment(self) -> bool:
        return (self.specaug_freq_masks > 0 and self.specaug_freq_width > 0) or \
            (self.specaug_time_masks > 0 and self.specaug_time_width > 0)


def parse_train(raw: dict[str, Any], where: str = "params.yaml",
                model: str | None = None) -> TrainConfig:
    """``train`` group; every name in ``train.models`` must be a registered model.

    With ``model``, the keys of ``models.<model>.train`` replace those of ``train`` (a bad
    one is named ``models.<model>.train.<key>``); ``train.models`` is never one of them.
    """
    cfg = parse_group(raw, "train", TrainConfig, where)
    for i, name in enumerate(cfg.models):
        check_model_name(name, f"train.models[{i}]", where)
    if len(set(cfg.models)) != len(cfg.models):
        raise ParamsError(f"{where}: train.models: a model is listed twice")
    own = _own_train(raw, model, where) if model else {}
    if not own:
        return cfg
    merged = {**(raw.get("train") or {}), **own}
    return parse_group({"models": {model: {MODEL_TRAIN: merged}}},
                       f"models.{model}.{MODEL_TRAIN}", TrainConfig, where)


def _own_train(raw: dict[str, Any], model: str, where: str) -> dict[str, Any]:
    """``models.<model>.train`` (``{}`` when absent); ``parse_group`` checks its keys but
    ``models``, which is the ``train`` group's alone."""
    settings = (raw.get("models") or {}).get(model)
    own = settings.get(MODEL_TRAIN) if isinstance(settings, dict) else None
    key = f"models.{model}.{MODEL_TRAIN}"
    if own is not None and not isinstance(own, dict):
        raise ParamsError(f"{where}: {key}: expected a mapping of train.* settings, got {own!r}")
    if own and "models" in own:
        raise ParamsError(f"{where}: {key}.models: not a per-model setting; list the model "
                          "in train.models")
    return own or {}


class CVConfig(Strict):
    """The ``cv`` group: k-fold cross-validation (stages ``cv_fold@<model>-<fold>`` and
    ``cv@<model>``, :mod:`audiotag.training.cv`). The folds are fixed by ``k`` (and
    ``seed``); ``folds`` says which of them train a model, so adding one trains only it."""

    models: list[str] = []  # models cross-validated; []: none (no cv stage exists)
    k: int = Field(5, ge=2)  # K: the training clips are split into K folds
    folds: list[int] = [0, 1, 2, 3, 4]  # the folds that train a model, each of 0..k-1

    @model_validator(mode="after")
    def _folds(self) -> CVConfig:
        for i, fold in enumerate(self.folds):
            if not 0 <= fold < self.k:
                raise ValueError(f"folds[{i}]: fold {fold} is not one of the k={self.k} folds "
                                 f"0..{self.k - 1}")
        if len(set(self.folds)) != len(self.folds):
            raise ValueError("folds: a fold is listed twice")
        if self.models and not self.folds:
            raise ValueError("folds: empty while cv.models lists models; list the folds "
                             f"to train (all: {list(range(self.k))})")
        return self


def parse_cv(raw: dict[str, Any], where: str = "params.yaml") -> CVConfig:
    """``cv`` group; every name in ``cv.models`` must be a registered model, once."""
    cfg = parse_group(raw, "cv", CVConfig, where)
    for i, name in enumerate(cfg.models):
        check_model_name(name, f"cv.models[{i}]", where)
    if len(set(cfg.models)) != len(cfg.models):
        raise ParamsError(f"{where}: cv.models: a model is listed twice")
    return cfg
