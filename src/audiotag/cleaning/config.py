"""The ``clean`` group: label cleaning of the noisy subset, and its detector's settings."""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, ValidationError

from audiotag.core.errors import ParamsError
from audiotag.core.params import Strict, format_validation_error, parse_group
from audiotag.models import list_models, parse_model_params
from audiotag.training.config import TrainConfig


class CleanConfig(Strict):
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
    crop_aggregate: Literal["mean", "max"] = "mean"  # a scored clip's windows: mean | max
    detector: str = "cnn1d"  # a registered model name
    detector_params: dict[str, Any] = {}  # over models.<detector>
    # over TrainConfig's defaults (not train.*)
    detector_train: dict[str, Any] = {"epochs": 12, "lr": 2e-3, "weight_decay": 1e-4, "threads": 1}


def parse_clean(raw: dict[str, Any],
                where: str = "params.yaml") -> tuple[CleanConfig, TrainConfig, dict[str, Any]]:
    """``clean`` group, the detector's training settings (``clean.detector_train`` over the
    defaults of :class:`TrainConfig`, not over params.yaml's ``train``: a training
    experiment does not re-run cleaning; one process) and its model settings
    (``models.<detector>`` with ``clean.detector_params`` over them)."""
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
