"""The registry of dataset sources chosen by ``data.dataset``.

A source is a config class (validated from ``data.<name>`` in params.yaml) and a function
that writes audio into a directory and returns ``(manifest, classes)``. Every source returns
the same manifest (see :mod:`audiotag.data.manifest`), so nothing downstream knows where
the data came from. Adding a source means one ``@register_source`` here or in a new
module imported below; no later stage changes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from audiotag.core.errors import DataSourceError, ParamsError
from audiotag.core.params import parse_group, unknown_key
from audiotag.core.registry import Registry
from audiotag.data import (
    common,
    esc50,
    fma,
    folder,
    fsdd,
    fsdkaggle2019,
    gtzan,
    precomputed,
    synthetic,
)
from audiotag.data.classes import reshape_classes
from audiotag.data.config import DataChecksConfig
from audiotag.data.inputs import walk
from audiotag.data.manifest import split_labels
from audiotag.data.screen import screen_clips

logger = logging.getLogger(__name__)

# (config, out_dir, seed) -> (manifest with paths relative to out_dir, classes)
Writer = Callable[[Any, Path, int], tuple[pd.DataFrame, list[str]]]


@dataclass(frozen=True)
class Source:
    config: type[BaseModel]
    write: Writer
    description: str
    true_labels: bool = False  # its manifest has true_labels (what clean.method: oracle reads)
    # (folder: where its CSV has a true_labels column, checked by check_params)


SOURCES: Registry[Source] = Registry("dataset source")


def register_source(name: str, config: type[BaseModel], description: str,
                    true_labels: bool = False):
    """Decorator registering ``write(cfg, out_dir, seed)`` as source ``name``."""

    def add(write: Writer) -> Writer:
        SOURCES.register(name)(Source(config, write, description, true_labels))
        return write

    return add


@register_source("synthetic", synthetic.SyntheticConfig,
                 "generated FSDKaggle2019-like tagging set with known label noise",
                 true_labels=True)
def _write_synthetic(cfg: synthetic.SyntheticConfig, out_dir: Path, seed: int):
    return synthetic.generate(cfg, out_dir, seed, progress=True)


register_source("fsdkaggle2019", fsdkaggle2019.FsdKaggle2019Config,
                "FSDKaggle2019 (DCASE 2019 Task 2), Zenodo 3612637: 80 classes, multi-label, "
                "curated + noisy")(fsdkaggle2019.write)
register_source("fsdd", fsdd.FsddConfig,
                "Free Spoken Digit Dataset v1.0.10: digits 0-9, official split")(fsdd.write)
register_source("esc50", esc50.Esc50Config,
                "ESC-50: 50 environmental sound classes, 5 folds")(esc50.write)
register_source("gtzan", gtzan.GtzanConfig,
                "GTZAN: 10 music genres, fault-filtered split")(gtzan.write)
register_source("fma", fma.FmaConfig,
                "FMA: top genre + Echo Nest regression targets, official split")(fma.write)
register_source("folder", folder.FolderConfig,
                "your own audio directory + CSV (fname,labels[,subset][,true_labels])",
                true_labels=True)(folder.write)
register_source("precomputed", precomputed.PrecomputedConfig,
                "precomputed per-clip .npy features + a labels CSV (the course's 128 mel + "
                "12 chroma, beat-synchronous)")(precomputed.write)

DATA_KEYS = ("dataset", "inputs", *DataChecksConfig.model_fields)
"""Keys of the ``data`` group that are settings, not source names."""


def parse_data_checks(raw: dict[str, Any], where: str = "params.yaml") -> DataChecksConfig:
    """``data.max_bad_fraction``, ``data.min_seconds``, ``data.allow_unlabelled``,
    ``data.merge_classes``, ``data.min_clips_per_class``."""
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{where}: data: expected a mapping")
    for key in ("max_bad_fraction", "min_seconds"):  # a bool is not a number here
        if isinstance(data.get(key), bool):
            raise ParamsError(f"{where}: data.{key}: expected a number (got {data[key]!r})")
    settings = {k: v for k, v in data.items() if k in DataChecksConfig.model_fields}
    return parse_group({"data": settings}, "data", DataChecksConfig, where)


def parse_max_bad_fraction(raw: dict[str, Any], where: str = "params.yaml") -> float:
    """``data.max_bad_fraction``: the share of unreadable/empty/silent clips tolerated."""
    return parse_data_checks(raw, where).max_bad_fraction


ORIGIN = common.ORIGIN
LABELLED_SUBSETS = ("curated", "noisy")


def _where(manifest: pd.DataFrame, row: int) -> str:
    if ORIGIN in manifest.columns:
        return str(manifest[ORIGIN].iloc[row])
    return f"clip_id={manifest['clip_id'].iloc[row]!r} ({manifest['path'].iloc[row]})"


def check_labels(manifest: pd.DataFrame, allow_unlabelled: bool) -> pd.DataFrame:
    """Stop on a clip without labels where labels are expected; returns the manifest
    without the :data:`ORIGIN` column.

    A clip with an empty label list trains as an all-negative clip and makes
    ``train.task: auto`` multi-label, so one forgotten label silently changes the task.
    Expected: every ``curated``, ``noisy`` and ``test`` clip is labelled (a test set without
    any label leaves evaluate@ nothing to score). ``data.allow_unlabelled: true`` keeps such
    clips (logged).
    """
    empty = manifest["labels"].map(lambda text: not split_labels(text)).to_numpy(bool)
    subset = manifest["subset"].to_numpy()
    bad = empty & np.isin(subset, LABELLED_SUBSETS)
    test = subset == "test"
    if (empty & test).any() and (~empty & test).any():  # a partly labelled test set
        bad |= empty & test
    _check_test_labelled(manifest, empty, test, allow_unlabelled)
    out = manifest.drop(columns=[ORIGIN], errors="ignore")
    if not bad.any():
        return out
    first = int(np.flatnonzero(bad)[0])
    why = ("no labels, but other test clips have labels" if subset[first] == "test" else
           f"no labels, but its subset {subset[first]!r} is a labelled one")
    count = f"{int(bad.sum())} such clip(s)"
    if not allow_unlabelled:
        raise DataSourceError(
            f"{_where(manifest, first)}: {why} ({count}); give it a label, or set "
            "data.allow_unlabelled: true to train such clips as all-negative")
    logger.warning("%s unlabelled in a labelled subset, kept as all-negative "
                   "(data.allow_unlabelled: true); first: %s", count, _where(manifest, first))
    return out


def _check_test_labelled(manifest: pd.DataFrame, empty: np.ndarray, test: np.ndarray,
                         allow_unlabelled: bool) -> None:
    """A test set with no label at all leaves evaluate@ nothing to score: stop here, naming
    its first clip, unless ``data.allow_unlabelled: true`` (then no test metrics)."""
    if not test.any() or not empty[test].all():
        return
    first = int(np.flatnonzero(test)[0])
    what = (f"{_where(manifest, first)}: the test subset ({int(test.sum())} clips) has no "
            "labels at all: evaluate@ has nothing to score")
    if not allow_unlabelled:
        raise DataSourceError(f"{what}; label the test clips, or set data.allow_unlabelled: "
                              "true to keep them unlabelled (no test metrics)")
    logger.warning("%s; kept (data.allow_unlabelled: true): no test metrics", what)


def build_dataset(name: str, cfg: BaseModel, out_dir: Path, seed: int,
                  checks: DataChecksConfig, rename: Callable[[str], str] | None = None,
                  ) -> tuple[pd.DataFrame, list[str]]:
    """Run source ``name`` into ``out_dir``, check its labels (:func:`check_labels`),
    screen its clips (see :mod:`.screen`) and apply ``data.merge_classes`` and
    ``data.min_clips_per_class`` (:func:`~audiotag.data.classes.reshape_classes`).

    Returns the manifest (bad clips excluded, ``duration_s``/``sample_rate`` measured from
    the files) and the classes; the caller validates and writes them. ``rename`` maps a
    temporary ``out_dir`` to its final path in what is written about the clips.
    """
    manifest, classes = SOURCES.get(name).write(cfg, out_dir, seed)
    manifest = check_labels(manifest, checks.allow_unlabelled)
    manifest = screen_clips(manifest, out_dir, checks.max_bad_fraction,
                            min_seconds=checks.min_seconds, rename=rename)
    # counted on the clips that stay (after screening)
    return reshape_classes(manifest, classes, checks.merge_classes or {},
                           checks.min_clips_per_class)


def parse_data(raw: dict[str, Any], where: str = "params.yaml") -> tuple[str, BaseModel]:
    """Validate the ``data`` group: the chosen source and its ``data.<source>`` settings.

    Settings of other registered sources may stay in params.yaml (switching back and forth
    is one ``-S data.dataset=...``); a key that names no source is an error.
    """
    data = raw.get("data") or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{where}: data: expected a mapping")
    name = data.get("dataset", "synthetic")
    if name not in SOURCES:
        raise ParamsError(f"{where}: data.dataset: unknown source {name!r}; "
                          f"known: {', '.join(SOURCES.names())}")
    for key in data:
        if key not in DATA_KEYS and key not in SOURCES:
            raise ParamsError(unknown_key(where, f"data.{key}", [*DATA_KEYS, *SOURCES.names()]))
    return name, parse_group(raw, f"data.{name}", SOURCES.get(name).config, where)


_INPUT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def parse_inputs(raw: dict[str, Any], where: str = "params.yaml") -> dict[str, str]:
    """``data.inputs``: name -> a file or folder outside the pipeline that a source reads.

    dvc.yaml makes each one a dependency (stage ``input@<name>``, which records a content
    fingerprint that ``download`` depends on), so editing a label or overwriting a clip in
    it makes ``download`` run again.
    """
    inputs = (raw.get("data") or {}).get("inputs") or {}
    if not isinstance(inputs, dict):
        raise ParamsError(f"{where}: data.inputs: expected a mapping of name -> path "
                          f"(got {inputs!r})")
    for name, path in inputs.items():
        if not isinstance(name, str) or not _INPUT_NAME.fullmatch(name):
            raise ParamsError(f"{where}: data.inputs.{name}: a name of letters, digits, _ or -")
        if not isinstance(path, str) or not path.strip():
            raise ParamsError(f"{where}: data.inputs.{name}: expected a path (got {path!r})")
    return inputs


def input_paths(cfg: BaseModel) -> dict[str, str]:
    """The set :data:`~audiotag.core.params.InputPath` fields of a source config, by name."""
    return {name: getattr(cfg, name) for name, field in type(cfg).model_fields.items()
            if (field.json_schema_extra or {}).get("input_path") and getattr(cfg, name)}


def _resolved(path: str) -> Path:
    return Path(path).expanduser().resolve()


def check_inputs_tracked(raw: dict[str, Any], name: str, cfg: BaseModel,
                         where: str = "params.yaml") -> None:
    """Every path the chosen source reads lies in (or is) a ``data.inputs`` entry: DVC sees
    only what dvc.yaml names, and a path in params.yaml alone is just a string to it."""
    inputs = {key: _resolved(path) for key, path in parse_inputs(raw, where).items()}
    for key, path in input_paths(cfg).items():
        target = _resolved(path)
        if not any(target == root or root in target.parents for root in inputs.values()):
            raise ParamsError(
                f"{where}: data.{name}.{key}: {path} is not in data.inputs, so DVC would not "
                f"see it change; add it (e.g. data.inputs.{key}: {path})")
    _check_linked_folders(inputs, where)


def _check_linked_folders(inputs: dict[str, Path], where: str) -> None:
    """A symlinked folder inside an input points into an input too: DVC does not look into
    symlinked folders, so a clip overwritten there would leave ``download`` up to date."""
    for key, root in inputs.items():
        links = walk(root)[1] if root.is_dir() else []
        for link, target in links:
            if not any(target == top or top in target.parents for top in inputs.values()):
                raise ParamsError(
                    f"{where}: data.inputs.{key}: {link} is a symlink to the folder {target}, "
                    f"which DVC does not look into; add it to data.inputs (e.g. "
                    f"data.inputs.{target.name}: {target}) so a change there re-runs download")
