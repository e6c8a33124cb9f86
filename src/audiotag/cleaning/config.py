"""The ``clean`` group: label cleaning of the noisy subset, and its detector's settings."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator

from audiotag.contracts.models import check_model_name, parse_model_params
from audiotag.core.errors import ParamsError
from audiotag.core.params import Strict, format_validation_error, parse_group
from audiotag.training.config import TrainConfig


class DetectorConfig(Strict):
    """``clean.detector``: the model ``cleanlab``, ``loss`` and ``agreement`` train and score
    with (``model``, a registered model, with ``params`` over its ``models.<name>`` settings
    and ``train`` over the built-in train defaults)."""

    model: str = "cnn1d"  # a registered model name
    params: dict[str, Any] = {}  # over models.<model>
    # over TrainConfig's defaults (not train.*)
    train: dict[str, Any] = {"epochs": 12, "lr": 2e-3, "weight_decay": 1e-4, "threads": 1,
                             "batch_size": 32, "lsoft_beta": 1.0}
    n_folds: int = Field(5, ge=2)  # cleanlab, loss: out-of-fold detectors
    crop_aggregate: Literal["mean", "max"] = "mean"  # a scored clip's windows: mean | max


class FlagConfig(Strict):
    """``clean.flag``: how many noisy clips are flagged; each key is read by one method."""

    filter_by: Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
                       "predicted_neq_given"] = "confident_learning"  # cleanlab
    threshold: float = Field(0.5, ge=0, le=1)  # agreement: lowest per-clip lwlrap kept
    max_per_class: int | None = Field(None, ge=1)  # agreement: None keeps every passing clip
    loss_fraction: float = Field(0.3, gt=0, lt=1)  # loss: share of noisy clips flagged


class FixConfig(Strict):
    """``clean.fix``: how ``clean.action`` treats a flagged clip."""

    relabel_threshold: float = Field(0.5, ge=0.5, lt=1)  # relabel: add p >= t, drop p < 1 - t
    flagged_weight: float = Field(0.3, ge=0, le=1)  # weight: loss weight of a flagged clip


DETECTOR_REFUSED = {
    "processes": "the detector trains in one process",
    "nodes": "the detector trains in one process",
    "rdzv_endpoint": "the detector trains in one process",
    "sync_batchnorm": "the detector trains in one process",
    "max_restarts": "the detector trains in one process",
    "regression_weight": "a regression setting; the detector classifies",
    "targets": "a regression setting; the detector classifies",
    "target_weights": "a regression setting; the detector classifies",
    "overfit_batches": "a sanity check of train@<model>, not of a detector",
    "train_score_clips": "nothing logs the detector's training curves",
    "init_from": "the detector starts from scratch (clean_labels depends on no checkpoint)",
    "freeze_init": "the detector starts from scratch (clean_labels depends on no checkpoint)",
}
"""``train`` keys the detector's run cannot honour -> why (named in the error)."""
DETECTOR_FIXED = {"processes": 1, "train_score_clips": 0}
"""What the detector's run sets of the keys it refuses (where the default differs)."""

CLEAN_MOVED = {
    "filter_by": "flag.filter_by", "threshold": "flag.threshold",
    "max_per_class": "flag.max_per_class", "loss_fraction": "flag.loss_fraction",
    "relabel_threshold": "fix.relabel_threshold", "flagged_weight": "fix.flagged_weight",
    "n_folds": "detector.n_folds", "crop_aggregate": "detector.crop_aggregate",
    "detector_params": "detector.params", "detector_train": "detector.train",
}
"""The flat keys of the layout before issue 22 -> their place now (named in the error)."""


class CleanConfig(Strict):
    """Label cleaning of the noisy subset (stage ``clean_labels``, ``audiotag.cleaning``).

    ``method`` finds the suspects: ``cleanlab``, ``loss`` and ``agreement`` with the
    ``detector``, ``oracle`` from the true labels; ``flag`` says how many are flagged;
    ``action`` is what is done to them, ``fix`` how.
    """

    method: Literal["none", "cleanlab", "agreement", "loss", "oracle"] = "none"
    action: Literal["drop", "relabel", "weight", "keep"] = "weight"
    detector: DetectorConfig = DetectorConfig()
    flag: FlagConfig = FlagConfig()
    fix: FixConfig = FixConfig()

    moved: ClassVar[dict[str, str]] = CLEAN_MOVED

    @field_validator("detector", mode="before")
    @classmethod
    def _detector_block(cls, value: Any) -> Any:
        if isinstance(value, str):  # the older layout's ``detector: cnn1d``
            raise ValueError(f"a block of settings: the model is clean.detector.model "
                             f"(detector: {{model: {value}}})")
        return value


def parse_clean(raw: dict[str, Any],
                where: str = "params.yaml") -> tuple[CleanConfig, TrainConfig, dict[str, Any]]:
    """``clean`` group, the detector's training settings (``clean.detector.train`` over the
    defaults of :class:`TrainConfig`, not over params.yaml's ``train``: a training
    experiment does not re-run cleaning; a key of :data:`DETECTOR_REFUSED` is an error
    naming it, and those keys take :data:`DETECTOR_FIXED`) and its model settings
    (``models.<model>`` with ``clean.detector.params`` over them)."""
    cfg = parse_group(raw, "clean", CleanConfig, where)
    det = cfg.detector
    check_model_name(det.model, "clean.detector.model", where)
    if "models" in det.train:
        raise ParamsError(f"{where}: clean.detector.train.models: not a training setting "
                          "(the detector is clean.detector.model)")
    for key, value in det.train.items():
        if key == "task" and value != "classification":
            raise ParamsError(f"{where}: clean.detector.train.task: the detector's run "
                              f"cannot honour it ({value!r}: label cleaning scores classes, "
                              "so only classification); remove it")
        if key in DETECTOR_REFUSED:
            raise ParamsError(f"{where}: clean.detector.train.{key}: the detector's run "
                              f"cannot honour it ({DETECTOR_REFUSED[key]}); remove it")
    try:
        detector_train = TrainConfig.model_validate(
            {"models": [det.model], **det.train, **DETECTOR_FIXED})
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, "clean.detector.train", where,
                                                  TrainConfig)) from None
    try:
        params = parse_model_params(raw, det.model, where, det.params)
    except ParamsError as err:
        raise ParamsError(f"{err} (clean.detector.params over models.{det.model})") from None
    return cfg, detector_train, params
