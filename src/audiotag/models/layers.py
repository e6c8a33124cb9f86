"""Small building blocks shared by the models.

Shapes: ``B`` batch, ``C`` channels, ``F`` mel bands, ``T`` frames, ``K`` classes.
Pooling uses ``ceil_mode=True`` so that short clips never pool down to zero frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from audiotag.contracts.model_configs import Pooling, PoolKind
from audiotag.models.heads import (
    Activation,
    ClassifierHead,
    HeadConfig,
    head_width,
    hidden_layers,
    make_activation,
)
from audiotag.models.outputs import Outputs


def eval_frozen(model: nn.Module) -> nn.Module:
    """Put every submodule whose parameters are all frozen (none ``requires_grad``) in eval
    mode; returns ``model``. Call it after ``model.train()``.

    A frozen layer must not change in any way: in training mode its batch norms would
    still update their running statistics (and its dropout would drop units). One rule for
    every way of freezing (``freeze_backbone``, ``train.freeze_init``, ``freeze_encoder``).
    A module without parameters (an activation, a dropout) follows the module around it.
    """
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(p.requires_grad for p in params):
            module.eval()
    return model


def check_input(x: Tensor, n_mels: int) -> None:
    """Raise :class:`ValueError` unless ``x`` is ``(batch, n_mels, frames)``."""
    if x.dim() != 3 or x.shape[1] != n_mels:
        raise ValueError(f"expected input of shape (batch, {n_mels}, frames), got {tuple(x.shape)}")


def _pool2d(kind: PoolKind, size: tuple[int, int]) -> nn.Module:
    if kind == "avg":
        # count_include_pad=False: a ceil-mode window over the edge averages real cells only
        return nn.AvgPool2d(size, ceil_mode=True, count_include_pad=False)
    return nn.MaxPool2d(size, ceil_mode=True)


def _block_dropout(p: float) -> list[nn.Module]:
    # appended after a block's own layers, so the parameter names stay those of a block
    # without dropout (checkpoints and init_from load either way)
    return [nn.Dropout(p)] if p > 0 else []


class ConvBlock2d(nn.Sequential):
    """``convs`` x (conv3x3 -> BatchNorm -> act), then a 2-D pool (-> dropout):
    ``(B, C_in, F, T) -> (B, C_out, F', T')``.

    ``pool`` is the window; ``pool_kind`` ``max`` or ``avg`` (PANNs and the DCASE
    baselines average: every cell of the window passes gradient, not only the largest).
    """

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int],
                 activation: Activation = "relu", dropout: float = 0.0, convs: int = 1,
                 pool_kind: PoolKind = "max") -> None:
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [nn.Conv2d(in_channels if i == 0 else out_channels, out_channels,
                                 kernel_size=3, padding=1, bias=False),
                       nn.BatchNorm2d(out_channels),
                       make_activation(activation, inplace=True)]
        super().__init__(*layers, _pool2d(pool_kind, pool), *_block_dropout(dropout))


class ConvBlock1d(nn.Sequential):
    """conv1d -> BatchNorm -> act -> max-pool(2) (-> dropout):
    ``(B, C_in, T) -> (B, C_out, ceil(T/2))``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 activation: Activation = "relu", dropout: float = 0.0) -> None:
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(out_channels),
            make_activation(activation, inplace=True),
            nn.MaxPool1d(2, ceil_mode=True),
            *_block_dropout(dropout),
        )


def residual_parts(dims: int, in_channels: int, out_channels: int, kernel_size: int,
                   activation: Activation) -> tuple[nn.Sequential, nn.Module]:
    """The body ``BN(conv(act(BN(conv(x)))))`` and the shortcut (a 1x1 conv + BN when the
    channel count changes, else the identity) of a ``dims``-D (1 or 2) residual block."""
    conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    pad = kernel_size // 2
    body = nn.Sequential(
        conv(in_channels, out_channels, kernel_size, padding=pad, bias=False),
        norm(out_channels),
        make_activation(activation),
        conv(out_channels, out_channels, kernel_size, padding=pad, bias=False),
        norm(out_channels),
    )
    shortcut: nn.Module = nn.Identity()
    if in_channels != out_channels:
        shortcut = nn.Sequential(conv(in_channels, out_channels, 1, bias=False),
                                 norm(out_channels))
    return body, shortcut


class ResBlock1d(nn.Module):
    """Residual 1-D block then max-pool(2) (-> dropout): ``(B, C_in, T) -> (B, C_out, T')``.

    ``act(BN(conv(act(BN(conv(x))))) + shortcut(x))``, the temporal analogue of
    :class:`ResBlock2d`; the shortcut is a 1x1 conv + BN when the channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 activation: Activation = "relu", dropout: float = 0.0) -> None:
        super().__init__()
        self.body, self.shortcut = residual_parts(1, in_channels, out_channels, kernel_size,
                                                  activation)
        self.act = make_activation(activation)
        self.pool = nn.Sequential(nn.MaxPool1d(2, ceil_mode=True), *_block_dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.body(x) + self.shortcut(x)))  # (B, C_out, T')


def conv_stack_1d(in_channels: int, channels: list[int], kernel_size: int,
                  activation: Activation, residual: bool = False,
                  dropout: float = 0.0) -> nn.Sequential:
    """Conv blocks (plain or residual), each halving time (ceil):
    ``(B, in_channels, T) -> (B, channels[-1], ceil(T / 2^n))``."""
    block = ResBlock1d if residual else ConvBlock1d
    widths = [in_channels, *channels]
    return nn.Sequential(*(block(widths[i], widths[i + 1], kernel_size, activation, dropout)
                           for i in range(len(channels))))


class GatedConvBlock2d(nn.Module):
    """Gated conv (GLU) block of Xu et al. 2017, pooling frequency only.

    ``out = BN(conv_a(x)) * sigmoid(BN(conv_b(x)))``, then max-pool ``(freq_pool, 1)``:
    ``(B, C_in, F, T) -> (B, C_out, ceil(F / freq_pool), T)``. ``conv_a`` and ``conv_b`` are
    computed as one convolution with ``2 * C_out`` channels.
    """

    def __init__(self, in_channels: int, out_channels: int, freq_pool: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 2 * out_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2 * out_channels)
        self.pool = nn.MaxPool2d((freq_pool, 1), ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        gated = F.glu(self.bn(self.conv(x)), dim=1)  # (B, C_out, F, T): a * sigmoid(b)
        return self.pool(gated)  # (B, C_out, F', T)


class MaxMeanHead(ClassifierHead):
    """Clip logits from a feature sequence: ``(B, C, T) -> (B, K)``.

    Concatenates the max and the mean over time (``(B, 2C)``), then the
    :class:`ClassifierHead` of ``cfg`` (``head_layers`` hidden layers, dropout, linear);
    without ``cfg``, dropout and a linear layer.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.2,
                 cfg: HeadConfig | None = None) -> None:
        super().__init__(2 * in_channels, num_classes, cfg or HeadConfig(dropout=dropout))

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1)  # (B, 2C)
        return super().forward(pooled)  # (B, K)


class AttentionHead(nn.Module):
    """Clip logits by attention pooling of frame logits: ``(B, T, D) -> Outputs``.

    Per class, a frame classifier gives frame logits ``(B, T, K)`` and an attention layer
    gives weights normalised over time with a softmax; the clip logit is the weighted mean
    of the frame logits. (Xu et al. 2017 average sigmoid frame *probabilities* with
    sigmoid-normalised weights; averaging logits keeps the output a logit for
    ``BCEWithLogitsLoss``.) With ``cfg.head_layers > 0`` the shared hidden layers
    (:func:`~audiotag.models.heads.hidden_layers`) first act on each frame.
    """

    def __init__(self, in_features: int, num_classes: int,
                 cfg: HeadConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or HeadConfig(head_layers=0)
        self.hidden = hidden_layers(in_features, cfg)  # per frame; empty for head_layers=0
        width = head_width(in_features, cfg)
        self.frame = nn.Linear(width, num_classes)
        self.attention = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Outputs:
        """Clip logits ``(B, K)``, frame logits and their weights ``(B, T, K)``."""
        x = self.hidden(x)  # (B, T, D) -> (B, T, H)
        frame_logits = self.frame(x)  # (B, T, K)
        weights = torch.softmax(self.attention(x), dim=1)  # (B, T, K), sums to 1 over T
        clip_logits = (weights * frame_logits).sum(dim=1)  # (B, K)
        return Outputs(clip_logits, framewise=frame_logits, attention=weights)


class ResBlock2d(nn.Module):
    """Residual block then max-pool: ``(B, C_in, F, T) -> (B, C_out, F', T')``.

    ``act(BN(conv3x3(act(BN(conv3x3(x))))) + shortcut(x))``; the shortcut is a 1x1 conv
    + BN when the channel count changes, the identity otherwise.
    """

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int],
                 activation: Activation = "relu", dropout: float = 0.0,
                 pool_kind: PoolKind = "max") -> None:
        super().__init__()
        self.body, self.shortcut = residual_parts(2, in_channels, out_channels, 3, activation)
        self.act = make_activation(activation)
        self.pool = _pool2d(pool_kind, pool)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.pool(self.act(self.body(x) + self.shortcut(x)))  # (B, C_out, F', T')
        return self.dropout(out)


def conv_stack_2d(channels: list[int], activation: Activation, residual: bool,
                  in_channels: int = 1, dropout: float = 0.0, convs: int = 1,
                  pool: PoolKind = "max", time_pools: int | None = None) -> nn.Sequential:
    """Conv blocks (plain with ``convs`` convolutions, or residual), each halving frequency
    (ceil) with a ``pool`` pooling, the first ``time_pools`` of them (None: all) time as
    well, each followed by ``dropout`` when above 0: ``(B, in_channels, F, T) ->
    (B, channels[-1], ceil(F / 2^n), ceil(T / 2^time_pools))``."""
    widths = [in_channels, *channels]
    n_time = len(channels) if time_pools is None else time_pools
    windows = [(2, 2) if i < n_time else (2, 1) for i in range(len(channels))]
    if residual:
        return nn.Sequential(*(ResBlock2d(widths[i], widths[i + 1], windows[i], activation,
                                          dropout, pool_kind=pool)
                               for i in range(len(channels))))
    return nn.Sequential(*(ConvBlock2d(widths[i], widths[i + 1], windows[i], activation, dropout,
                                       convs=convs, pool_kind=pool)
                           for i in range(len(channels))))


def frame_mask(lengths: Tensor | None, frames: int, batch: int) -> Tensor:
    """``(B, T)`` bool, True on valid frames (``t < lengths[b]``); all True without lengths."""
    if lengths is None:
        return torch.ones(batch, frames, dtype=torch.bool)
    return torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]


class SequencePool(nn.Module):
    """Pool a padded sequence over its valid frames: ``(B, T, D), mask (B, T) -> (B, D)``.

    ``mean`` / ``max`` over valid frames; ``attention``: a learned score per frame,
    softmax over valid frames, weighted sum. (``last`` is the recurrent net's final
    hidden state and is handled by the caller.)
    """

    def __init__(self, mode: Pooling, features: int) -> None:
        super().__init__()
        self.mode = mode
        self.score = nn.Linear(features, 1) if mode == "attention" else None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        valid = mask.unsqueeze(-1).to(x.device)  # (B, T, 1)
        if self.mode == "max":
            return x.masked_fill(~valid, float("-inf")).amax(dim=1)  # (B, D)
        if self.mode == "attention":
            assert self.score is not None
            scores = self.score(x).masked_fill(~valid, float("-inf"))  # (B, T, 1)
            return (torch.softmax(scores, dim=1) * x).sum(dim=1)  # (B, D)
        if self.mode == "mean":
            return (x * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)  # (B, D)
        raise ValueError(f"SequencePool cannot pool {self.mode!r}")
