"""Typed, validated views of params.yaml, one per stage group.

Stage scripts load params.yaml once and parse the groups they use; library code only ever
sees these objects. Any bad value stops the stage before it touches an output, with a
message naming the offending key (``params.yaml: train.lr: ...``).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

KNOWN_GROUPS = (
    "seed", "data", "split", "clean", "features", "train", "models", "evaluate", "weights",
)
PadMode = Literal["wrap", "zeros", "reflect", "mirror"]
FeatureKind = Literal["waveform", "stft", "logmel", "mfcc", "chroma", "logmel+mfcc",
                      "logmel+chroma"]


class ParamsError(ValueError):
    """A params.yaml problem; the message names the key."""


def unknown_key(where: str, key: str, valid: Any) -> str:
    """``params.yaml: train.epochz: unknown key; did you mean train.epochs?`` (difflib)."""
    parent, _, name = key.rpartition(".")
    valid = sorted(str(v) for v in valid)
    close = difflib.get_close_matches(name, valid, n=1)
    if close:
        hint = f"did you mean {parent + '.' if parent else ''}{close[0]}?"
    else:
        hint = f"known: {', '.join(valid)}"
    return f"{where}: {key}: unknown key; {hint}"


InputPath = Annotated[str | None, Field(json_schema_extra={"input_path": True})]
"""A file or folder outside the pipeline that a dataset source reads (``local_dir``, the
``folder`` source's ``audio_dir``/``csv``): it must be listed in ``data.inputs`` so that
DVC sees it change (see :func:`audiotag.data.sources.check_inputs_tracked`)."""


def _admits_bool(annotation: Any) -> bool:
    """Whether a field type accepts a boolean (``bool``, ``Any``, or one inside it)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_admits_bool(arg) for arg in get_args(annotation) if not isinstance(arg, str))


def _holds_bool(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return any(_holds_bool(item) for item in value)
    return isinstance(value, bool)


class _Strict(BaseModel):
    """Base of every params config: unknown keys are errors, and a boolean is never taken
    for a number (pydantic's lax mode reads ``epochs: true`` as 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        if _holds_bool(value) and not _admits_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number or text, not a boolean")
        return value


class DataChecksConfig(_Strict):
    """The ``data`` group's own settings (not a source's): what the download stage accepts.

    Parsed from ``data`` without ``dataset`` and the per-source mappings
    (:func:`audiotag.data.sources.parse_data_checks`).
    """

    max_bad_fraction: float = Field(0.01, ge=0, le=1)
    min_seconds: float = Field(0.1, ge=0)
    allow_unlabelled: bool = False


class SplitConfig(_Strict):
    """Which clips train, which validate (early stopping, checkpoint choice)."""

    valid_fold: int = Field(0, ge=0)
    train_subsets: list[Literal["curated", "noisy"]] = ["curated", "noisy"]
    valid_subsets: list[Literal["curated", "noisy"]] = ["curated"]

    @model_validator(mode="after")
    def _non_empty(self) -> SplitConfig:
        if not self.train_subsets:
            raise ValueError("train_subsets must name at least one subset")
        if not self.valid_subsets:
            raise ValueError("valid_subsets must name at least one subset")
        return self


class CleanConfig(_Strict):
    """Label cleaning of the noisy subset (stage ``clean_labels``, ``audiotag.cleaning``).

    The detector (``detector``, a registered model, with ``detector_params`` over its
    ``models.<name>`` settings and ``detector_train`` over the ``train`` settings) is used by
    ``cleanlab``, ``loss`` and ``agreement``; ``oracle`` reads the true labels instead.
    ``filter_by`` is read only by ``cleanlab``, ``threshold``/``max_per_class`` only by
    ``agreement``, ``loss_fraction`` only by ``loss``.
    """

    method: Literal["none", "cleanlab", "agreement", "loss", "oracle"] = "cleanlab"
    action: Literal["drop", "relabel", "weight", "keep"] = "weight"
    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                       "predicted_neq_given"] = "confident_learning"
    threshold: float = Field(0.5, ge=0, le=1)  # agreement: lowest per-clip lwlrap kept
    max_per_class: int | None = Field(None, ge=1)  # agreement: None keeps every passing clip
    loss_fraction: float = Field(0.3, gt=0, lt=1)  # loss: share of noisy clips flagged
    relabel_threshold: float = Field(0.5, ge=0.5, lt=1)  # relabel: add p >= t, drop p < 1 - t
    flagged_weight: float = Field(0.3, ge=0, le=1)  # weight: loss weight of a flagged clip
    n_folds: int = Field(5, ge=2)
    detector: str = "cnn1d"  # a registered model name
    detector_params: dict[str, Any] = {}  # over models.<detector>
    detector_train: dict[str, Any] = {}  # over TrainConfig defaults (not train.*), e.g. epochs


class FeaturesConfig(_Strict):
    """The ``features`` stage: front end, clip length, crops and normalisation.

    One clip -> ``(dim, frames)`` with ``frames = 1 + samples // hop_length`` (``waveform``:
    ``(1, samples)``); ``dim`` depends on ``kind`` (see ``audiotag.features.frontend``).
    """

    kind: FeatureKind = "logmel"
    sample_rate: int = Field(16000, ge=1000)
    n_fft: int = Field(1024, ge=16)
    hop_length: int = Field(320, ge=1)
    win_length: int | None = Field(None, ge=2)  # None: n_fft
    n_mels: int = Field(64, ge=1)
    fmin: float = Field(20.0, ge=0)
    fmax: float | None = None  # None: sample_rate / 2
    n_mfcc: int = Field(20, ge=1)
    to_db: bool = True  # 10*log10(max(power, log_offset)); False: ln(power + log_offset)
    log_offset: float = Field(1e-10, gt=0)
    top_db: float | None = Field(80.0, gt=0)
    beat_sync: bool = False
    clip_seconds: float = Field(4.0, gt=0)
    pad_mode: PadMode = "wrap"
    train_crop: Literal["random", "center"] = "random"
    crops_per_clip: int = Field(1, ge=1)
    eval_crops: Literal["center"] | Annotated[int, Field(ge=1)] = "center"
    normalize: Literal["standard", "minmax", "none"] = "standard"
    batch_size: int = Field(32, ge=1)
    workers: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _check_band(self) -> FeaturesConfig:
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        if not self.fmin < fmax <= nyquist:
            raise ValueError(f"need fmin < fmax <= sample_rate/2 ({nyquist:g}); "
                             f"got fmin={self.fmin:g}, fmax={fmax:g}")
        if self.win_length is not None and self.win_length > self.n_fft:
            raise ValueError(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if "mfcc" in self.kind and self.n_mfcc > self.n_mels:
            raise ValueError(f"n_mfcc ({self.n_mfcc}) must be <= n_mels ({self.n_mels})")
        if self.beat_sync:
            if self.kind == "waveform":
                raise ValueError("beat_sync needs a spectral kind, not kind=waveform")
            if self.crops_per_clip > 1 or self.eval_crops not in ("center", 1):
                raise ValueError("beat_sync keeps whole variable-length sequences: "
                                 "use crops_per_clip=1 and eval_crops=center")
        return self

    @property
    def n_eval_crops(self) -> int:
        """Windows per clip at evaluation (``center`` = 1)."""
        return 1 if self.eval_crops == "center" else int(self.eval_crops)


class TrainConfig(_Strict):
    """The ``train@<model>`` stages (``audiotag.training``): task, optimiser, schedule,
    augmentation, SWA, noisy-label handling, device, resume and transfer learning."""

    models: list[str] = Field(min_length=1)
    task: Literal["auto", "multilabel", "singlelabel", "regression", "multitask"] = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # singlelabel / single-label multitask
    regression_weight: float = Field(1.0, ge=0)  # multitask: weight of the regression MSE
    epochs: int = Field(15, ge=1)
    batch_size: int = Field(32, ge=1)
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    weight_decay: float = Field(0.0, ge=0)
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
    lsoft_beta: float = Field(1.0, ge=0, le=1)  # 1: plain loss on noisy clips
    patience: int = Field(5, ge=1)
    amp: bool = False  # mixed precision (CUDA only)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    num_workers: int = Field(0, ge=0)
    threads: int = Field(0, ge=0)  # torch threads of the training process; 0: torch's default
    processes: int = Field(1, ge=1)  # >1: DistributedDataParallel over this many processes
    overfit_batches: int = Field(0, ge=0)  # >0: sanity check on this many fixed batches
    init_from: str | None = None  # checkpoint (model.pt) whose compatible layers are loaded
    freeze_init: bool = False  # freeze the layers loaded from init_from

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.swa_start_epoch > self.epochs:
            raise ValueError(f"swa_start_epoch ({self.swa_start_epoch}) must be <= epochs "
                             f"({self.epochs}); 0 turns SWA off")
        if self.freeze_init and not self.init_from:
            raise ValueError("freeze_init needs init_from (a checkpoint to load)")
        if self.batch_size < self.processes:
            raise ValueError(f"batch_size ({self.batch_size}) is the global batch, split over "
                             f"processes ({self.processes}): it must be at least processes")
        return self

    @property
    def swa(self) -> bool:
        return self.swa_start_epoch > 0

    @property
    def spec_augment(self) -> bool:
        return (self.specaug_freq_masks > 0 and self.specaug_freq_width > 0) or \
            (self.specaug_time_masks > 0 and self.specaug_time_width > 0)


class EvaluateConfig(_Strict):
    """The ``evaluate@<model>`` stages (see ``audiotag.metrics.evaluate``)."""

    batch_size: int = Field(64, ge=1)
    score_train: bool = True  # also score training clips: train lwlrap, curated vs noisy
    threads: int = Field(1, ge=0)  # torch CPU threads; 0: torch's default


class WeightsConfig(_Strict):
    """The ``weights@<model>`` stages; the thresholds decide ``verdict`` (see
    ``audiotag.analysis.weights.gradient_verdict``)."""

    near_zero: float = Field(1e-3, gt=0)
    hist_bins: int = Field(50, ge=2)
    batch_size: int = Field(32, ge=1)  # validation clips for the activation statistics
    vanishing_ratio: float = Field(1e-3, gt=0)  # first/last layer grad norm below: vanishing
    exploding_ratio: float = Field(1e3, gt=0)  # first/last layer grad norm above: exploding
    exploding_norm: float = Field(1e3, gt=0)  # any layer's grad norm above: exploding

    @model_validator(mode="after")
    def _ordered(self) -> WeightsConfig:
        if self.vanishing_ratio >= self.exploding_ratio:
            raise ValueError(f"vanishing_ratio ({self.vanishing_ratio:g}) must be below "
                             f"exploding_ratio ({self.exploding_ratio:g})")
        return self


M = TypeVar("M", bound=BaseModel)


def read_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """Read params.yaml; unknown top-level groups (a misspelt ``trian:``) are an error."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such file") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of groups at the top level")
    unknown = sorted(set(raw) - set(KNOWN_GROUPS))
    if unknown:
        raise ParamsError("\n".join(unknown_key(str(path), key, KNOWN_GROUPS) for key in unknown))
    return raw


def format_validation_error(err: ValidationError, prefix: str, where: str = "params.yaml",
                            model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``params.yaml: train.lr: Input should be greater than 0 (got -1)``;
    an unknown key of ``model`` suggests the closest field."""
    lines = []
    for problem in err.errors():
        key = ".".join([prefix, *(str(p) for p in problem["loc"])]) if problem["loc"] else prefix
        if model is not None and problem["type"] == "extra_forbidden" and len(problem["loc"]) == 1:
            lines.append(unknown_key(where, key, model.model_fields))
            continue
        got = "" if problem["type"] == "missing" else f" (got {problem.get('input')!r})"
        lines.append(f"{where}: {key}: {problem['msg']}{got}")
    return "\n".join(lines)


def parse_group(raw: dict[str, Any], key: str, model: type[M], where: str = "params.yaml") -> M:
    """Validate ``raw[key]`` (a dotted key such as ``data.synthetic`` is allowed) as ``model``."""
    value: Any = raw
    for part in key.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ParamsError(f"{where}: {key}: expected a mapping, got {value!r}")
    try:
        return model.model_validate(value)
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, key, where, model)) from None


def parse_seed(raw: dict[str, Any], where: str = "params.yaml") -> int:
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ParamsError(f"{where}: seed: expected a non-negative integer (got {seed!r})")
    return seed


def parse_train(raw: dict[str, Any], where: str = "params.yaml") -> TrainConfig:
    """``train`` group; every name in ``train.models`` must be a registered model."""
    from audiotag.models import list_models  # models import torch; keep config import light

    cfg = parse_group(raw, "train", TrainConfig, where)
    known = list_models()
    for i, name in enumerate(cfg.models):
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
            raise ParamsError(f"{where}: train.models[{i}]: unknown model {name!r}; {hint}")
    if len(set(cfg.models)) != len(cfg.models):
        raise ParamsError(f"{where}: train.models: a model is listed twice")
    return cfg


def parse_model_params(raw: dict[str, Any], name: str, where: str = "params.yaml",
                       overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``models.<name>`` validated against the model's config; returns the validated dict."""
    from audiotag.models import validate_model_params

    models = raw.get("models") or {}
    if not isinstance(models, dict):
        raise ParamsError(f"{where}: models: expected a mapping of model name -> settings")
    from audiotag.models import list_models as _known

    for other in models:
        if other not in _known():
            raise ParamsError(unknown_key(where, f"models.{other}", _known()))
    params = {**(models.get(name) or {}), **(overrides or {})}
    try:
        return validate_model_params(name, params).model_dump()
    except (ValueError, KeyError) as err:
        raise ParamsError(f"{where}: {err.args[0] if err.args else err}") from None


def parse_clean(raw: dict[str, Any],
                where: str = "params.yaml") -> tuple[CleanConfig, TrainConfig, dict[str, Any]]:
    """``clean`` group, the detector's training settings (``clean.detector_train`` over the
    defaults of :class:`TrainConfig`, not over params.yaml's ``train``: a training
    experiment does not re-run cleaning; one process) and its model settings
    (``models.<detector>`` with ``clean.detector_params`` over them)."""
    from audiotag.models import list_models

    cfg = parse_group(raw, "clean", CleanConfig, where)
    known = list_models()
    if cfg.detector not in known:
        close = difflib.get_close_matches(cfg.detector, known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known)}"
        raise ParamsError(f"{where}: clean.detector: unknown model {cfg.detector!r}; {hint}")
    if "models" in cfg.detector_train:
        raise ParamsError(f"{where}: clean.detector_train.models: not a training setting "
                          "(the detector is clean.detector)")
    try:
        detector_train = TrainConfig.model_validate(
            {"models": [cfg.detector], **cfg.detector_train, "processes": 1})
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, "clean.detector_train", where,
                                                  TrainConfig)) from None
    try:
        params = parse_model_params(raw, cfg.detector, where, cfg.detector_params)
    except ParamsError as err:
        raise ParamsError(f"{err} (clean.detector_params over models.{cfg.detector})") from None
    return cfg, detector_train, params
