"""The ``weights`` group (weight and gradient analysis thresholds) and the ``report`` group
(what the cross-model report and the plots page show)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from audiotag.core.errors import ParamsError
from audiotag.core.params import Strict, parse_group
from audiotag.training.config import parse_train


class WeightsConfig(Strict):
    """The ``weights@<model>`` stages; the thresholds decide ``verdict`` (see
    ``audiotag.analysis.weights.gradient_verdict``)."""

    near_zero: float = Field(1e-3, gt=0)
    hist_bins: int = Field(50, ge=2)
    batch_size: int = Field(32, ge=1)  # validation clips for the activation statistics
    vanishing_ratio: float = Field(1e-3, gt=0)  # first/last layer grad norm below: vanishing
    exploding_ratio: float = Field(1e3, gt=0)  # first/last layer grad norm above: exploding
    exploding_norm: float = Field(1e3, gt=0)  # any layer's grad norm above: exploding
    saliency_clips: int = Field(4, ge=1)  # validation clips of the saliency / activation maps
    layer_views: int = Field(0, ge=0)  # conv layers drawn one figure each; 0: every one

    @model_validator(mode="after")
    def _ordered(self) -> WeightsConfig:
        if self.vanishing_ratio >= self.exploding_ratio:
            raise ValueError(f"vanishing_ratio ({self.vanishing_ratio:g}) must be below "
                             f"exploding_ratio ({self.exploding_ratio:g})")
        return self


class ReportConfig(Strict):
    """The ``report`` stage and the ``regression@<model>`` stages."""

    # "Classes whose noisy labels look wrong": a class is listed when its curated - noisy
    # lwlrap gap exceeds the median class's by this many robust standard deviations of the
    # gaps (1.4826 x their median absolute deviation): every noisy label costs some lwlrap,
    # only a class far beyond the others is suspect
    suspect_spread: float = Field(2.0, ge=0)
    # models whose predicted-vs-true scatter of the regression targets is drawn (a
    # regression or multitask train.task); [] on a tagging dataset: no such chart exists
    regression_plots: list[str] = []


REGRESSION_TASKS = ("regression", "multitask")


def parse_report(raw: dict[str, Any], where: str = "params.yaml") -> ReportConfig:
    """The ``report`` group; each model of ``report.regression_plots`` must be in
    ``train.models`` and train a regression or multitask ``train.task`` (its own
    ``models.<model>.train`` included): a tagging model has no targets to draw."""
    cfg = parse_group(raw, "report", ReportConfig, where)
    models = parse_train(raw, where).models
    for name in cfg.regression_plots:
        if name not in models:
            raise ParamsError(f"{where}: report.regression_plots: {name!r} is not in "
                              f"train.models {models}")
        task = parse_train(raw, where, name).task
        if task not in REGRESSION_TASKS:
            raise ParamsError(f"{where}: report.regression_plots: {name!r} trains train.task "
                              f"{task!r}, which has no regression targets (regression or "
                              "multitask)")
    return cfg
