"""The classifier head every model ends in, its activations and weight init.

The options (``head_layers``, ``head_hidden``, ``head_norm``, ``dropout``, ``activation``,
``init``) are :class:`~audiotag.contracts.model_configs.HeadConfig`, which every model
config inherits (torch-free, in :mod:`audiotag.contracts.model_configs`).

Shapes: ``B`` batch, ``D`` features, ``H`` hidden units, ``K`` classes.
"""

from __future__ import annotations

from torch import Tensor, nn

from audiotag.contracts.model_configs import Activation, HeadConfig, HeadNorm, InitScheme

__all__ = ["Activation", "ClassifierHead", "HeadConfig", "InitScheme", "init_weights",
           "make_activation"]

# Layers whose weights ``init`` re-initialises (recurrent cells and norms keep torch's init).
_INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)


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
