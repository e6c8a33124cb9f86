"""The ``data`` group's own checks and the ``split`` group (which clips train, which
validate)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from audiotag.core.params import Strict


class DataChecksConfig(Strict):
    """The ``data`` group's own settings (not a source's): what the download stage accepts.

    Parsed from ``data`` without ``dataset`` and the per-source mappings
    (:func:`audiotag.data.sources.parse_data_checks`).
    """

    max_bad_fraction: float = Field(0.01, ge=0, le=1)
    min_seconds: float = Field(0.1, ge=0)
    allow_unlabelled: bool = False
    # old class -> new name (merged), before counting; None, not {}: `-S` can then set a
    # mapping (an empty mapping in params.yaml refuses new keys)
    merge_classes: dict[str, str] | None = None
    min_clips_per_class: int = Field(0, ge=0)  # rarer classes are dropped; 0: keep all


class SplitConfig(Strict):
    """Which clips train, which validate (early stopping, checkpoint choice)."""

    valid_fold: int = Field(0, ge=0)
    train_subsets: list[Literal["curated", "noisy"]] = ["curated", "noisy"]
    valid_subsets: list[Literal["curated", "noisy"]] = ["curated"]
    fraction: float = Field(1.0, gt=0, le=1)  # share of the training clips kept (stratified)
    fraction_seed: int = 0  # which share: another seed, other clips

    @model_validator(mode="after")
    def _non_empty(self) -> SplitConfig:
        if not self.train_subsets:
            raise ValueError("train_subsets must name at least one subset")
        if not self.valid_subsets:
            raise ValueError("valid_subsets must name at least one subset")
        return self
