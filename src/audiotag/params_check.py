"""The whole params.yaml validated at once, before any stage does work (stage ``check_params``).

Every group goes through the same typed configs the stages use, so a field added to a config
is checked here with no change: unknown keys at any level (with the closest valid key
suggested), wrong types, value ranges, unknown or missing model names. The settings of
dataset sources that are not chosen may stay in params.yaml; only their keys are checked
(a source's own checks, such as ``folder`` needing both paths, apply when it is chosen).
"""

from __future__ import annotations

import csv as csvlib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from audiotag.analysis.config import WeightsConfig, parse_report
from audiotag.cleaning.config import CleanConfig, parse_clean
from audiotag.contracts.models import list_models, parse_model_params
from audiotag.core.errors import ParamsError
from audiotag.core.params import parse_group, parse_seed, read_params, unknown_key
from audiotag.data.config import SplitConfig
from audiotag.data.sources import (
    SOURCES,
    check_inputs_tracked,
    parse_data,
    parse_max_bad_fraction,
)
from audiotag.evaluation.config import EvaluateConfig, parse_ensembles
from audiotag.features.config import FeaturesConfig
from audiotag.training.config import parse_cv, parse_train

GROUPS: dict[str, type[BaseModel]] = {
    "split": SplitConfig, "clean": CleanConfig, "features": FeaturesConfig,
    "evaluate": EvaluateConfig, "weights": WeightsConfig,
}
"""Groups that are one config each (``seed``, ``data``, ``train``, ``models`` have parsers)."""


def _other_sources(raw: dict[str, Any], where: str) -> list[str]:
    """Unknown keys in the settings of the sources not chosen by ``data.dataset``."""
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    chosen = data.get("dataset", "synthetic")
    problems = []
    for name in SOURCES.names():
        settings = data.get(name)
        if name == chosen or settings is None:
            continue
        if not isinstance(settings, dict):
            problems.append(f"{where}: data.{name}: expected a mapping, got {settings!r}")
            continue
        fields = SOURCES.get(name).config.model_fields
        problems += [unknown_key(where, f"data.{name}.{key}", fields)
                     for key in settings if key not in fields]
    return problems


def _data(raw: dict[str, Any], where: str) -> None:
    """The chosen source's settings, every path it reads listed in ``data.inputs``, and the
    settings of other groups that depend on the source."""
    name, cfg = parse_data(raw, where)
    check_inputs_tracked(raw, name, cfg, where)
    split = parse_group(raw, "split", SplitConfig, where)
    n_folds = getattr(cfg, "n_folds", None)
    if n_folds is not None and split.valid_fold >= n_folds:
        raise ParamsError(f"{where}: split.valid_fold: {split.valid_fold} is not a fold of "
                          f"data.{name} (n_folds: {n_folds}, folds 0-{n_folds - 1})")
    clean = (raw.get("clean") or {}).get("method") if isinstance(raw.get("clean"), dict) else None
    if clean == "oracle":
        _oracle_source(name, cfg, where)


def _oracle_source(name: str, cfg: BaseModel, where: str) -> None:
    """``clean.method: oracle`` reads the manifest's ``true_labels``: a source that has them
    (folder: a ``true_labels`` column in its CSV, looked up when the CSV is there)."""
    if not SOURCES.get(name).true_labels:
        having = ", ".join(n for n in SOURCES.names() if SOURCES.get(n).true_labels)
        raise ParamsError(f"{where}: clean.method: oracle needs the true labels of the noisy "
                          f"clips, which data.dataset: {name} does not have (only {having})")
    csv = Path(cfg.csv).expanduser() if name == "folder" else None
    if csv is None or not csv.is_file():
        return  # download names a missing CSV
    with csv.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        header = next(csvlib.reader(f), [])
    if "true_labels" not in header:
        raise ParamsError(f"{where}: clean.method: oracle needs the true labels of the noisy "
                          f"clips: add a true_labels column to data.folder.csv ({csv}; it has "
                          f"{', '.join(header) or 'no header'})")


def _features_with_train(raw: dict[str, Any], where: str) -> None:
    """``features.pca`` with ``train.aug_gain_db`` / ``aug_background``: those act on the
    bands before the projection, which the model's input no longer has."""
    features, train = raw.get("features"), raw.get("train")
    if not (isinstance(features, dict) and isinstance(train, dict)):
        return
    if features.get("pca") and (train.get("aug_gain_db") or train.get("aug_background")):
        raise ParamsError(f"{where}: features.pca: not with train.aug_gain_db / "
                          "aug_background (they work on the bands before the projection); "
                          "set them to 0 or pca to 0")


def check_params(path: str | os.PathLike[str] = "params.yaml") -> None:
    """Validate every group of ``path``; raise :class:`ParamsError` listing every problem."""
    where = str(path)
    raw = read_params(path)  # unknown top-level groups
    problems: list[str] = []

    def attempt(parse, *args) -> None:
        try:
            parse(*args)
        except ParamsError as err:
            problems.extend(line for line in str(err).splitlines() if line not in problems)

    attempt(parse_seed, raw, where)
    attempt(_data, raw, where)
    attempt(parse_max_bad_fraction, raw, where)
    problems.extend(_other_sources(raw, where))
    for group, config in GROUPS.items():
        attempt(parse_group, raw, group, config, where)
    attempt(parse_train, raw, where)
    attempt(parse_cv, raw, where)  # k-fold cross-validation: registered models, folds < k
    attempt(parse_clean, raw, where)  # the detector: a registered model, its overrides
    attempt(parse_ensembles, raw, where)  # members among train.models
    attempt(parse_report, raw, where)  # regression plots of regression models only
    attempt(_features_with_train, raw, where)
    models = raw.get("models")
    if models is not None:  # every model's settings, listed in train.models or not
        for name in models if isinstance(models, dict) else [""]:
            attempt(parse_model_params, raw, name, where)
            if name in list_models():
                attempt(parse_train, raw, where, name)  # models.<name>.train
    if problems:
        raise ParamsError("\n".join(problems))
