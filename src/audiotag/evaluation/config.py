"""The ``evaluate`` group."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field

from audiotag.contracts.models import list_models
from audiotag.contracts.names import CV_SUFFIX
from audiotag.core.errors import ParamsError
from audiotag.core.params import Strict, parse_group
from audiotag.training.config import parse_train


class EvaluateConfig(Strict):
    """The ``evaluate@<model>`` stages (see ``audiotag.evaluation.evaluate``)."""

    batch_size: int = Field(64, ge=1)
    score_train: bool = True  # also score training clips: train lwlrap, curated vs noisy
    threads: int = Field(1, ge=0)  # torch CPU threads; 0: torch's default
    bootstrap_resamples: int = Field(1000, ge=100)  # resamples of the test clips: lwlrap CI
    bootstrap_seed: int = 0  # seed of those resamples (the same clips drawn in every run)


# an ensemble's name is a file name (metrics/<name>.json, ensembles/<name>.csv), not one
# of another stage's metrics files (clean_labels: metrics/labels.json; explore:
# metrics/details/data.json)
ENSEMBLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RESERVED_NAMES = ("labels", "data")


class EnsembleConfig(Strict):
    """One entry of the ``ensembles`` group: stage ``ensemble@<name>`` (see
    ``audiotag.evaluation.ensemble``)."""

    # members, each in train.models; None: every model of train.models (the ensemble is
    # skipped while there are fewer than two)
    models: Annotated[list[str], Field(min_length=2)] | None
    method: Literal["mean", "geometric", "rank"]

    def members(self, trained: list[str]) -> list[str]:
        """The models averaged, given ``train.models``."""
        return list(trained) if self.models is None else list(self.models)


def parse_ensembles(raw: dict[str, Any], where: str = "params.yaml") -> dict[str, EnsembleConfig]:
    """The ``ensembles`` group (``{}`` or missing: none). A name must be a plain file name and
    no model's; every member listed (``models`` not null) a model of ``train.models``, once."""
    group = raw.get("ensembles") or {}
    if not isinstance(group, dict):
        raise ParamsError(f"{where}: ensembles: expected a mapping of name: settings, "
                          f"got {group!r}")
    trained = parse_train(raw, where).models
    out = {}
    for name in group:
        key = f"ensembles.{name}"
        if not isinstance(name, str) or not ENSEMBLE_NAME.fullmatch(name):
            raise ParamsError(f"{where}: {key}: an ensemble's name is a file name: letters, "
                              "digits, '_', '-', '.'")
        if (name in list_models() or name in RESERVED_NAMES
                or name.removesuffix(CV_SUFFIX) in list_models()):
            raise ParamsError(f"{where}: {key}: {name!r} is a model's or another stage's name, "
                              "or a fold ensemble's (<model>_cv) (its metrics file would be "
                              "theirs); rename the ensemble")
        cfg = parse_group(raw, key, EnsembleConfig, where)
        for i, member in enumerate(cfg.models or []):
            if member not in trained:
                raise ParamsError(f"{where}: {key}.models[{i}]: {member!r} is not in "
                                  f"train.models {trained}")
        if cfg.models is not None and len(set(cfg.models)) != len(cfg.models):
            raise ParamsError(f"{where}: {key}.models: a model is listed twice")
        out[name] = cfg
    return out
