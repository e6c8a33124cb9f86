"""The ``evaluate`` group."""

from __future__ import annotations

from pydantic import Field

from audiotag.core.params import Strict


class EvaluateConfig(Strict):
    """The ``evaluate@<model>`` stages (see ``audiotag.evaluation.evaluate``)."""

    batch_size: int = Field(64, ge=1)
    score_train: bool = True  # also score training clips: train lwlrap, curated vs noisy
    threads: int = Field(1, ge=0)  # torch CPU threads; 0: torch's default
    bootstrap_resamples: int = Field(1000, ge=100)  # resamples of the test clips: lwlrap CI
    bootstrap_seed: int = 0  # seed of those resamples (the same clips drawn in every run)
