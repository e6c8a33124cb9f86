"""The model registry: name -> the factory of a model in the catalogue.

A model's name, config class and capabilities are its card in the torch-free catalogue
(:mod:`audiotag.contracts.models`); here each card gets the factory that builds it::

    @register_model("cnn2d")
    class Cnn2d(Tagger):
        def __init__(self, num_classes: int, n_mels: int, cfg: Cnn2dConfig) -> None: ...
        def outputs(self, x: Tensor) -> Outputs: ...

(every model is a :class:`~audiotag.models.outputs.Tagger`: one output record,
:class:`~audiotag.models.outputs.Outputs`)

and a model is built by name with ``create_model("cnn2d", num_classes, n_mels, **params)``.
Bad params raise :class:`ValueError` with one ``models.<name>.<key>: <reason>`` entry per
problem, so a typo in ``params.yaml`` points at the offending key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from audiotag.contracts.models import (
    MAX_PARAMETERS,
    ModelCard,
    ModelInput,
    list_models,
    model_card,
    model_config_class,
    validate_config,
    validate_model_params,
)
from audiotag.core.registry import Registry
from audiotag.models.outputs import Tagger

ModelFactory = Callable[[int, int, Any], Tagger]
F = TypeVar("F", bound=ModelFactory)

__all__ = ["MAX_PARAMETERS", "MODELS", "ModelSpec", "create_model", "list_models",
           "model_config_class", "register_model", "validate_model_params"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its card (name, config class, capabilities: see
    :class:`audiotag.contracts.models.ModelCard`) and ``factory(num_classes, n_mels, cfg)``."""

    card: ModelCard
    factory: ModelFactory

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def config(self) -> type[BaseModel]:
        return self.card.config

    @property
    def input(self) -> ModelInput:
        return self.card.input

    @property
    def init_branches(self) -> Mapping[str, Mapping[str, str]]:
        return self.card.init_branches

    def accepts(self, kind: str) -> bool:
        """Whether the model can train on ``features.kind`` ``kind``."""
        return self.card.accepts(kind)


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(name: str, *, registry: Registry[ModelSpec] = MODELS,
                   card: ModelCard | None = None) -> Callable[[F], F]:
    """Class decorator adding the factory of model ``name`` to ``registry`` (the global one
    by default), with its catalogue card (or ``card``, for a model outside the catalogue).

    A name without a card raises :class:`KeyError`; a duplicate ``name`` raises
    :class:`ValueError` (from :class:`audiotag.core.registry.Registry`).
    """
    card = card or model_card(name)

    def add(factory: F) -> F:
        registry.register(name)(ModelSpec(card=card, factory=factory))
        return factory

    return add


def create_model(name: str, num_classes: int, n_mels: int, **params: Any) -> Tagger:
    """Build model ``name`` for ``num_classes`` outputs on ``n_mels``-band input.

    The model maps ``(batch, n_mels, frames)`` float32 to logits ``(batch, num_classes)``.
    Models over :data:`MAX_PARAMETERS` parameters raise :class:`ValueError`.
    """
    spec = MODELS.get(name)
    for arg, value in (("num_classes", num_classes), ("n_mels", n_mels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"models.{name}: {arg} must be a positive int, got {value!r}")
    cfg = validate_config(name, spec.config, params)
    model = spec.factory(num_classes, n_mels, cfg)
    if not isinstance(model, Tagger):
        raise TypeError(f"models.{name}: {type(model).__name__} is not a Tagger (one "
                        "Outputs record from outputs(x); see audiotag.models.outputs)")
    n_params = sum(p.numel() for p in model.parameters())
    cap = spec.card.max_parameters or MAX_PARAMETERS
    if n_params > cap:
        raise ValueError(f"models.{name}: {n_params:,} parameters exceed the cap of "
                         f"{cap:,} (issue 5); choose smaller settings")
    return model
