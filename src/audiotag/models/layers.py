"""Small building blocks shared by the models.

Shapes: ``B`` batch, ``C`` channels, ``F`` mel bands, ``T`` frames, ``K`` classes.
Pooling uses ``ceil_mode=True`` so that short clips never pool down to zero frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def check_input(x: Tensor, n_mels: int) -> None:
    """Raise :class:`ValueError` unless ``x`` is ``(batch, n_mels, frames)``."""
    if x.dim() != 3 or x.shape[1] != n_mels:
        raise ValueError(f"expected input of shape (batch, {n_mels}, frames), got {tuple(x.shape)}")


class ConvBlock2d(nn.Sequential):
    """conv3x3 -> BatchNorm -> ReLU -> max-pool: ``(B, C_in, F, T) -> (B, C_out, F', T')``."""

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int]) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(pool, ceil_mode=True),
        )


class ConvBlock1d(nn.Sequential):
    """conv1d -> BatchNorm -> ReLU -> max-pool(2): ``(B, C_in, T) -> (B, C_out, ceil(T/2))``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(2, ceil_mode=True),
        )


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


class MaxMeanHead(nn.Module):
    """Clip logits from a feature sequence: ``(B, C, T) -> (B, K)``.

    Concatenates the max and the mean over time (``(B, 2C)``), then dropout and a linear layer.
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1)  # (B, 2C)
        return self.fc(self.dropout(pooled))  # (B, K)


class AttentionHead(nn.Module):
    """Clip logits by attention pooling of frame logits: ``(B, T, D) -> (B, K)``.

    Per class, a frame classifier gives frame logits ``(B, T, K)`` and an attention layer
    gives weights normalised over time with a softmax; the clip logit is the weighted mean
    of the frame logits. (Xu et al. 2017 average sigmoid frame *probabilities* with
    sigmoid-normalised weights; averaging logits keeps the output a logit for
    ``BCEWithLogitsLoss``.)
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.frame = nn.Linear(in_features, num_classes)
        self.attention = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x)[0]

    def pool(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(clip_logits (B, K), frame_logits (B, T, K), weights (B, T, K))``."""
        frame_logits = self.frame(x)  # (B, T, K)
        weights = torch.softmax(self.attention(x), dim=1)  # (B, T, K), sums to 1 over T
        clip_logits = (weights * frame_logits).sum(dim=1)  # (B, K)
        return clip_logits, frame_logits, weights
