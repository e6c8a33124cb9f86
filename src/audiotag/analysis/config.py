"""The ``weights`` group: weight and gradient analysis thresholds."""

from __future__ import annotations

from pydantic import Field, model_validator

from audiotag.core.params import Strict


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

    @model_validator(mode="after")
    def _ordered(self) -> WeightsConfig:
        if self.vanishing_ratio >= self.exploding_ratio:
            raise ValueError(f"vanishing_ratio ({self.vanishing_ratio:g}) must be below "
                             f"exploding_ratio ({self.exploding_ratio:g})")
        return self
