"""Options shared by every model: classifier head depth, dropout, activation and init.

Every model config inherits :class:`HeadConfig`, so ``models.<name>.head_layers``,
``head_hidden``, ``dropout``, ``activation`` and ``init`` mean the same thing for every
model; params.yaml writes them once, in ``models.defaults`` (under each model unless it
sets the key: :func:`audiotag.models.registry.parse_model_params`), and the
vanishing-gradient study (sigmoid vs ReLU, default vs Kaiming vs Xavier init, deeper
heads) is a params change (``++`` adds the model's own copy)::

    dvc exp run -S ++models.cnn2d.activation=sigmoid -S ++models.cnn2d.init=xavier

Shapes: ``B`` batch, ``D`` features, ``H`` hidden units, ``K`` classes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from torch import Tensor, nn

from audiotag.core.params import Strict

Activation = Literal["relu", "gelu", "sigmoid", "prelu"]
InitScheme = Literal["default", "kaiming", "xavier"]
HeadNorm = Literal["layer", "batch", "none"]

# Layers whose weights ``init`` re-initialises (recurrent cells and norms keep torch's init).
_INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)


class HeadConfig(Strict):
    """Params every model has (a mixin for the model configs).

    Attributes:
        head_layers: hidden layers of the classifier head, 0-3; each is dropout -> linear
            -> norm -> activation. 0 is a single linear layer (after dropout).
        head_hidden: units of each hidden head layer, or a list with one width per
            layer (tapered, e.g. ``[1024, 512]``; its length must be ``head_layers``).
        head_norm: the norm of each hidden head layer: ``layer`` (LayerNorm: a clip's
            output never depends on the batch), ``batch`` (BatchNorm over the features:
            the notebooks' Linear-BN-PReLU) or ``none``.
        dropout: dropout before each head layer (and where a model says, inside it).
        activation: nonlinearity of the head's hidden layers and of the model's own
            conv/dense blocks (ImageNet backbones keep theirs; the GLU gates of ``crnn``
            stay sigmoid).
        init: ``default`` keeps torch's init; ``kaiming`` (He normal, fan-in) or
            ``xavier`` (Glorot uniform) re-initialise every conv and linear weight, with
            the gain of ``activation``, and zero their biases.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    head_layers: int = Field(default=0, ge=0, le=3)
    head_hidden: Annotated[int, Field(ge=1)] | list[Annotated[int, Field(ge=1)]] = 128
    head_norm: HeadNorm = "layer"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.2
    activation: Activation = "relu"
    init: InitScheme = "default"

    @field_validator("head_hidden")
    @classmethod
    def _widths(cls, value: int | list[int], info: ValidationInfo) -> int | list[int]:
        layers = info.data.get("head_layers")  # validated first (declared before)
        if isinstance(value, list) and layers is not None and len(value) != layers:
            raise ValueError(f"{len(value)} widths for head_layers={layers}: give one width "
                             "per hidden layer (or one number for all)")
        return value

    @property
    def head_widths(self) -> list[int]:
        """The width of each hidden head layer (``head_layers`` of them)."""
        if isinstance(self.head_hidden, list):
            return list(self.head_hidden)
        return [self.head_hidden] * self.head_layers


def make_activation(name: Activation, inplace: bool = False) -> nn.Module:
    """A fresh activation module; ``prelu`` has one learned slope (any input shape)."""
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    if name == "gelu":
        return nn.GELU()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "prelu":
        return nn.PReLU()
    raise ValueError(f"unknown activation {name!r}")


class FeatureBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last dim of ``(..., D)``: every clip (and frame) is a sample."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


def _norm(kind: HeadNorm, width: int) -> list[nn.Module]:
    if kind == "layer":
        return [nn.LayerNorm(width)]
    if kind == "batch":
        return [FeatureBatchNorm(width)]
    return []


def hidden_layers(in_features: int, cfg: HeadConfig) -> nn.Sequential:
    """``cfg.head_layers`` x (dropout -> linear -> norm -> act): ``(..., D) -> (..., H)``.

    Works per clip ``(B, D)`` and per frame ``(B, T, D)``; widths ``cfg.head_widths``,
    norm ``cfg.head_norm`` (LayerNorm normalises the last dim, so a clip's output never
    depends on the rest of the batch; BatchNorm does, in training). Empty when
    ``head_layers == 0``.
    """
    layers: list[nn.Module] = []
    width = in_features
    for hidden in cfg.head_widths:
        layers += [nn.Dropout(cfg.dropout), nn.Linear(width, hidden),
                   *_norm(cfg.head_norm, hidden), make_activation(cfg.activation)]
        width = hidden
    return nn.Sequential(*layers)


def head_width(in_features: int, cfg: HeadConfig) -> int:
    """Feature width after :func:`hidden_layers`."""
    return cfg.head_widths[-1] if cfg.head_layers else in_features


class ClassifierHead(nn.Module):
    """Clip logits from clip features: hidden layers, dropout, linear: ``(B, D) -> (B, K)``.

    With ``head_layers == 0`` the parameters are ``fc.weight`` / ``fc.bias`` only, as in
    the single-linear heads of earlier checkpoints.
    """

    def __init__(self, in_features: int, num_classes: int, cfg: HeadConfig) -> None:
        super().__init__()
        self.hidden = hidden_layers(in_features, cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(head_width(in_features, cfg), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(self.hidden(x)))  # (B, D) -> (B, H) -> (B, K)


def _gain_name(activation: Activation) -> str:
    # GELU and PReLU (slope 0.25 at init) are close enough to ReLU for the gain
    return "sigmoid" if activation == "sigmoid" else "relu"


def init_weights(module: nn.Module, scheme: InitScheme, activation: Activation) -> None:
    """Re-initialise every conv/linear weight of ``module`` (biases to 0) by ``scheme``.

    ``kaiming``: normal, std ``gain / sqrt(fan_in)``; ``xavier``: uniform with std
    ``gain * sqrt(2 / (fan_in + fan_out))``; ``gain`` is ``sqrt(2)`` for relu-like
    activations and 1 for sigmoid. ``default`` leaves torch's init untouched.
    """
    if scheme == "default":
        return
    nonlinearity = _gain_name(activation)
    for layer in module.modules():
        if not isinstance(layer, _INIT_LAYERS):
            continue
        if scheme == "kaiming":
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity=nonlinearity)
        else:
            nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain(nonlinearity))
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
