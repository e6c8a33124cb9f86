"""The model catalogue: every model's name, config class and capabilities (torch-free).

A model exists once it has a :class:`ModelCard` here; :mod:`audiotag.models` registers the
``nn.Module`` that builds it (``@register_model(name)``, which refuses a name without a
card). params.yaml's ``models.<name>`` blocks, ``train.models`` and checkpoint metadata
are checked against this catalogue, so check_params and the light stages never load torch.
A renamed model stays loadable through :data:`RENAMED_MODELS` (as timm's
``register_model_deprecations``).

Bad params raise :class:`ValueError` with one ``models.<name>.<key>: <reason>`` entry per
problem, so a typo in ``params.yaml`` points at the offending key.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from audiotag.contracts.model_configs import (
    AutoencoderConfig,
    BackboneConfig,
    Cnn1dConfig,
    Cnn2dConfig,
    CrnnConfig,
    HeadConfig,
    MixNetConfig,
    RnnConfig,
    StnConfig,
)
from audiotag.core.errors import ParamsError
from audiotag.core.params import closest, did_you_mean, format_validation_error, unknown_key

MAX_PARAMETERS = 50_000_000
"""The model zoo's size cap: ``create_model`` refuses bigger models."""

ModelInput = Literal["spectrogram", "waveform", "any"]
"""What a model takes: time-frequency features (any ``features.kind`` but ``waveform``),
raw waveforms only (``(B, 1, samples)``, ``n_mels == 1``), or either."""

SHARED = "defaults"
"""``models.defaults``: the options every model shares (the head options of
:class:`audiotag.contracts.model_configs.HeadConfig`), under each ``models.<name>`` unless
the model sets the key itself. Not a model name."""

MODEL_TRAIN = "train"
"""``models.<name>.train``: that model's ``train.*`` settings
(:func:`audiotag.training.config.parse_train`), not a setting of the model itself."""


@dataclass(frozen=True)
class ModelCard:
    """A model's name, config class and the capabilities training relies on.

    ``input``: see :data:`ModelInput`. ``max_parameters``: this model's own size cap over
    :data:`MAX_PARAMETERS` (None: that one). ``init_branches``: ``train.init_from`` may give one
    checkpoint per branch, ``branch -> {checkpoint prefix: own prefix}``. (How a model
    trains, in one phase or several, the model declares: :mod:`audiotag.models.phases`.)

    ``config`` must be a pydantic model that forbids extra keys, so that a misspelt
    parameter is an error rather than silently ignored.
    """

    name: str
    config: type[BaseModel]
    input: ModelInput = "spectrogram"
    max_parameters: int | None = None
    init_branches: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        config, name = self.config, self.name
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            raise TypeError(f"model {name!r}: config must be a pydantic BaseModel subclass")
        if config.model_config.get("extra") != "forbid":
            raise TypeError(f"model {name!r}: config {config.__name__} must set extra='forbid'")
        if name == SHARED:
            raise ValueError(f"model {name!r}: the name of params.yaml's models.{SHARED} block "
                             "(the options every model shares)")

    def accepts(self, kind: str) -> bool:
        """Whether the model can train on ``features.kind`` ``kind``."""
        if kind == "waveform":
            return self.input != "spectrogram"
        return self.input != "waveform"


# train.init_from: {wave: ..., spec: ...}: each mixnet branch from a trained model's layers
# (checkpoint prefix -> own prefix): a cnn1d on waveforms (its strided stem and conv
# blocks; channels = wave_channels) and a cnn2d (its conv blocks; = spec_channels)
MIXNET_BRANCHES = {"wave": {"stem.": "wave_stem.", "features.": "wave_blocks."},
                   "spec": {"features.": "spec_blocks."}}

CARDS: dict[str, ModelCard] = {card.name: card for card in (
    ModelCard("autoencoder", AutoencoderConfig),
    ModelCard("cnn1d", Cnn1dConfig, input="any"),   # any features.kind
    ModelCard("cnn2d", Cnn2dConfig),
    ModelCard("crnn", CrnnConfig),
    ModelCard("lstm", RnnConfig),
    ModelCard("gru", RnnConfig),
    ModelCard("stn", StnConfig),
    ModelCard("mixnet", MixNetConfig, input="waveform", init_branches=MIXNET_BRANCHES),
    *(ModelCard(name, BackboneConfig) for name in
      ("resnet18", "resnet50", "regnet_y_800mf", "efficientnet_v2_s", "swin_v2_t",
       "eva02_tiny")),
    # timm's EVA-02 base, 85M parameters: the English log's model, over the zoo's cap
    ModelCard("eva02_base", BackboneConfig, max_parameters=90_000_000),
)}
"""Every model, by name."""

RENAMED_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "resstn": ("stn", {"residual": True}),
    "resautoencoder": ("autoencoder", {"residual": True}),
}
"""Old name -> (name, params it implies): entries folded into a ``residual`` setting
(issue 22), so an older checkpoint naming one loads as the model with ``residual: true``
(same layers and weights)."""


def list_models() -> list[str]:
    """Model names, sorted."""
    return sorted(CARDS)


def model_card(name: str) -> ModelCard:
    """The card of model ``name``; unknown name -> :class:`KeyError` with a suggestion."""
    if name not in CARDS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return CARDS[name]


def check_model_name(name: str, key: str, where: str = "params.yaml") -> None:
    """:class:`ParamsError` ``<where>: <key>: unknown model 'x'; did you mean y?`` unless
    ``name`` is a model."""
    if name not in CARDS:
        raise ParamsError(f"{where}: {key}: unknown model {name!r}; "
                          f"{did_you_mean(str(name), list_models())}")


def current_name(name: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A model name and params as saved (perhaps under an old name) -> today's name and
    params (the settings the old name implied over them)."""
    if name in RENAMED_MODELS:
        new, implied = RENAMED_MODELS[name]
        return new, {**params, **implied}
    return name, dict(params)


def model_config_class(name: str) -> type[BaseModel]:
    """The config class of model ``name``; unknown name -> :class:`KeyError`."""
    return model_card(name).config


def validate_model_params(name: str, params: Mapping[str, Any]) -> BaseModel:
    """Validate ``params`` against model ``name``'s config class and return the config.

    Raises :class:`KeyError` for an unknown model and :class:`ValueError` naming every bad
    key as ``models.<name>.<key>: <reason>`` (unknown keys, wrong types, out-of-range values).
    """
    return validate_config(name, model_config_class(name), params)


def validate_config(name: str, config: type[BaseModel], params: Mapping[str, Any]) -> BaseModel:
    """:func:`validate_model_params` against ``config``, the config class of model ``name``."""
    if not isinstance(params, Mapping):
        raise ValueError(f"models.{name}: params must be a mapping, got {type(params).__name__}")
    try:
        return config.model_validate(dict(params))
    except ValidationError as err:
        raise ValueError(_format_errors(name, config, err)) from None


def _format_errors(name: str, config: type[BaseModel], err: ValidationError) -> str:
    """One ``models.<name>.<key>: <reason>`` entry per pydantic error, ``; ``-joined."""
    entries = []
    for error in err.errors():
        loc = error["loc"]
        if error["type"] == "extra_forbidden" and loc:
            valid = sorted(config.model_fields)
            close = closest(str(loc[0]), valid)
            hint = f" (did you mean {close!r}?)" if close else ""
            reason = f"unknown parameter{hint}; valid: {', '.join(valid) or 'none'}"
        else:
            reason = f"{error['msg']} (got {reprlib.repr(error['input'])})"
        entries.append(f"models.{name}{_format_loc(loc)}: {reason}")
    return "; ".join(entries)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    """``("channels", 1)`` -> ``".channels[1]"``; ``()`` -> ``""``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


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
        if other != SHARED and other not in CARDS:
            raise ParamsError(unknown_key(where, f"models.{other}", [SHARED, *list_models()]))
    if name == SHARED:  # params_check walks every block: the shared one alone
        shared_model_defaults(raw, where)
        return {}
    shared = shared_model_defaults(raw, where)
    fields = model_config_class(name).model_fields if name in CARDS else {}
    own = {k: v for k, v in (models.get(name) or {}).items() if k != MODEL_TRAIN}
    params = {**{k: v for k, v in shared.items() if k in fields}, **own, **(overrides or {})}
    try:
        return validate_model_params(name, params).model_dump()
    except (ValueError, KeyError) as err:
        raise ParamsError(f"{where}: {err.args[0] if err.args else err}") from None
