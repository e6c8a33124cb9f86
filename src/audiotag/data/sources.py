"""The registry of dataset sources chosen by ``data.dataset``.

A source is a config class (validated from ``data.<name>`` in params.yaml) and a function
that writes audio into a directory and returns ``(manifest, classes)``. Every source returns
the same manifest (see :mod:`audiotag.data.manifest`), so nothing downstream knows where
the data came from. Adding a source means one ``@register_source`` here or in a new
module imported below; no later stage changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from audiotag.core.config import ParamsError, parse_group
from audiotag.core.registry import Registry
from audiotag.data import synthetic

# (config, out_dir, seed) -> (manifest with paths relative to out_dir, classes)
Writer = Callable[[Any, Path, int], tuple[pd.DataFrame, list[str]]]


@dataclass(frozen=True)
class Source:
    config: type[BaseModel]
    write: Writer
    description: str


SOURCES: Registry[Source] = Registry("dataset source")


def register_source(name: str, config: type[BaseModel], description: str):
    """Decorator registering ``write(cfg, out_dir, seed)`` as source ``name``."""

    def add(write: Writer) -> Writer:
        SOURCES.register(name)(Source(config, write, description))
        return write

    return add


@register_source("synthetic", synthetic.SyntheticConfig,
                 "generated FSDKaggle2019-like tagging set with known label noise")
def _write_synthetic(cfg: synthetic.SyntheticConfig, out_dir: Path, seed: int):
    return synthetic.generate(cfg, out_dir, seed, progress=True)


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
        if key != "dataset" and key not in SOURCES:
            raise ParamsError(f"{where}: data.{key}: not a known source; "
                              f"known: {', '.join(SOURCES.names())}")
    return name, parse_group(raw, f"data.{name}", SOURCES.get(name).config, where)
