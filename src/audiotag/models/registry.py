"""The model registry: a name -> (constructor, config class) table with validated params.

Every model is registered with a pydantic config class::

    @register_model("cnn2d", config=Cnn2dConfig)
    class Cnn2d(nn.Module):
        def __init__(self, num_classes: int, n_mels: int, cfg: Cnn2dConfig) -> None: ...

and built by name with ``create_model("cnn2d", num_classes, n_mels, **params)``. Bad params
raise :class:`ValueError` with one ``models.<name>.<key>: <reason>`` entry per problem, so a
typo in ``params.yaml`` points at the offending key.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError
from torch import nn

from audiotag.core.errors import ParamsError
from audiotag.core.params import format_validation_error, unknown_key
from audiotag.core.registry import Registry
from audiotag.models.heads import HeadConfig

# Config field types shared by the model configs.
ChannelList = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
"""Non-empty list of channel counts, each >= 1: one block per entry."""
DropoutRate = Annotated[float, Field(ge=0.0, lt=1.0)]
"""Dropout probability in [0, 1)."""

MAX_PARAMETERS = 50_000_000
"""The model zoo's size cap: :func:`create_model` refuses bigger models."""

ModelFactory = Callable[[int, int, Any], nn.Module]
F = TypeVar("F", bound=ModelFactory)


ModelInput = Literal["spectrogram", "waveform", "any"]
"""What a model takes: time-frequency features (any ``features.kind`` but ``waveform``),
raw waveforms only (``(B, 1, samples)``, ``n_mels == 1``), or either."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``factory(num_classes, n_mels, cfg)``, its config class and the
    capabilities training relies on.

    ``input``: see :data:`ModelInput`. ``init_branches``: ``train.init_from`` may give one
    checkpoint per branch, ``branch -> {checkpoint prefix: own prefix}``. (How a model
    trains, in one phase or several, the model declares: :mod:`audiotag.models.phases`.)
    """

    name: str
    factory: ModelFactory
    config: type[BaseModel]
    input: ModelInput = "spectrogram"
    init_branches: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def accepts(self, kind: str) -> bool:
        """Whether the model can train on ``features.kind`` ``kind``."""
        if kind == "waveform":
            return self.input != "spectrogram"
        return self.input != "waveform"


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(
    name: str, *, config: type[BaseModel], registry: Registry[ModelSpec] = MODELS,
    input: ModelInput = "spectrogram",
    init_branches: Mapping[str, Mapping[str, str]] | None = None,
) -> Callable[[F], F]:
    """Class decorator adding a model to ``registry`` (the global one by default), with
    its capabilities (see :class:`ModelSpec`).

    ``config`` must be a pydantic model that forbids extra keys, so that a misspelt
    parameter is an error rather than silently ignored. A duplicate ``name`` raises
    :class:`ValueError` (from :class:`audiotag.core.registry.Registry`).
    """
    if not (isinstance(config, type) and issubclass(config, BaseModel)):
        raise TypeError(f"model {name!r}: config must be a pydantic BaseModel subclass")
    if config.model_config.get("extra") != "forbid":
        raise TypeError(f"model {name!r}: config {config.__name__} must set extra='forbid'")
    if name == SHARED:
        raise ValueError(f"model {name!r}: the name of params.yaml's models.{SHARED} block "
                         "(the options every model shares)")

    def add(factory: F) -> F:
        registry.register(name)(ModelSpec(name=name, factory=factory, config=config,
                                          input=input,
                                          init_branches=dict(init_branches or {})))
        return factory

    return add


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return MODELS.names()


def model_config_class(name: str) -> type[BaseModel]:
    """The config class of model ``name``; unknown name -> :class:`KeyError`."""
    return MODELS.get(name).config


def validate_model_params(name: str, params: Mapping[str, Any]) -> BaseModel:
    """Validate ``params`` against model ``name``'s config class and return the config.

    Raises :class:`KeyError` for an unknown model and :class:`ValueError` naming every bad
    key as ``models.<name>.<key>: <reason>`` (unknown keys, wrong types, out-of-range values).
    """
    config = model_config_class(name)
    if not isinstance(params, Mapping):
        raise ValueError(f"models.{name}: params must be a mapping, got {type(params).__name__}")
    try:
        return config.model_validate(dict(params))
    except ValidationError as err:
        raise ValueError(_format_errors(name, config, err)) from None


def create_model(name: str, num_classes: int, n_mels: int, **params: Any) -> nn.Module:
    """Build model ``name`` for ``num_classes`` outputs on ``n_mels``-band input.

    The model maps ``(batch, n_mels, frames)`` float32 to logits ``(batch, num_classes)``.
    Models over :data:`MAX_PARAMETERS` parameters raise :class:`ValueError`.
    """
    spec = MODELS.get(name)
    for arg, value in (("num_classes", num_classes), ("n_mels", n_mels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"models.{name}: {arg} must be a positive int, got {value!r}")
    cfg = validate_model_params(name, params)
    model = spec.factory(num_classes, n_mels, cfg)
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > MAX_PARAMETERS:
        raise ValueError(f"models.{name}: {n_params:,} parameters exceed the cap of "
                         f"{MAX_PARAMETERS:,} (issue 5); choose smaller settings")
    return model


def _format_errors(name: str, config: type[BaseModel], err: ValidationError) -> str:
    """One ``models.<name>.<key>: <reason>`` entry per pydantic error, ``; ``-joined."""
    entries = []
    for error in err.errors():
        loc = error["loc"]
        if error["type"] == "extra_forbidden" and loc:
            reason = _unknown_key_reason(str(loc[0]), config)
        else:
            reason = f"{error['msg']} (got {reprlib.repr(error['input'])})"
        entries.append(f"models.{name}{_format_loc(loc)}: {reason}")
    return "; ".join(entries)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    """``("channels", 1)`` -> ``".channels[1]"``; ``()`` -> ``""``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _unknown_key_reason(key: str, config: type[BaseModel]) -> str:
    valid = sorted(config.model_fields)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown parameter{hint}; valid: {', '.join(valid) or 'none'}"


SHARED = "defaults"
"""``models.defaults``: the options every model shares (the head options of
:class:`audiotag.models.heads.HeadConfig`), under each ``models.<name>`` unless the model
sets the key itself. Not a model name."""


MODEL_TRAIN = "train"
"""``models.<name>.train``: that model's ``train.*`` settings
(:func:`audiotag.training.config.parse_train`), not a setting of the model itself."""


def shared_model_defaults(raw: dict[str, Any], where: str = "params.yaml") -> dict[str, Any]:
    """``models.defaults`` checked against the shared options (unknown keys, bad values)."""
    shared = (raw.get("models") or {}).get(SHARED) or {}
    if not isinstance(shared, dict):
        raise ParamsError(f"{where}: models.{SHARED}: expected a mapping of shared settings")
    try:
        HeadConfig.model_validate(shared)
    except ValidationError as err:
        raise ParamsError(format_validation_error(err, f"models.{SHARED}", where,
                                                  HeadConfig)) from None
    return dict(shared)


def parse_model_params(raw: dict[str, Any], name: str, where: str = "params.yaml",
                       overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``models.<name>`` over ``models.defaults`` (the keys the model's config has), with
    ``overrides`` over both, validated against the model's config; returns the validated
    dict. ``models.<name>.train`` is not a model setting: ``parse_train`` reads it."""
    models = raw.get("models") or {}
    if not isinstance(models, dict):
        raise ParamsError(f"{where}: models: expected a mapping of model name -> settings")
    for other in models:
        if other != SHARED and other not in list_models():
            raise ParamsError(unknown_key(where, f"models.{other}", [SHARED, *list_models()]))
    if name == SHARED:  # params_check walks every block: the shared one alone
        shared_model_defaults(raw, where)
        return {}
    shared = shared_model_defaults(raw, where)
    fields = model_config_class(name).model_fields if name in list_models() else {}
    own = {k: v for k, v in (models.get(name) or {}).items() if k != MODEL_TRAIN}
    params = {**{k: v for k, v in shared.items() if k in fields}, **own, **(overrides or {})}
    try:
        return validate_model_params(name, params).model_dump()
    except (ValueError, KeyError) as err:
        raise ParamsError(f"{where}: {err.args[0] if err.args else err}") from None
