"""``cnn1d``: a 1-D CNN over frames, with the mel bands as input channels."""

from __future__ import annotations

from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from audiotag.models.layers import ConvBlock1d, MaxMeanHead, check_input
from audiotag.models.registry import ChannelList, DropoutRate, register_model


class Cnn1dConfig(BaseModel):
    """Params of ``cnn1d``.

    Attributes:
        channels: output channels of each conv block (conv1d-BN-ReLU-maxpool 2).
        kernel_size: temporal kernel size, odd so that padding keeps the frame count.
        dropout: dropout before the linear head.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: ChannelList = Field(default_factory=lambda: [64, 64, 128])
    kernel_size: int = Field(default=5, ge=1)
    dropout: DropoutRate = 0.2

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError("must be odd")
        return value


@register_model("cnn1d", config=Cnn1dConfig)
class Cnn1d(nn.Module):
    """1-D CNN: conv blocks halve time; max+mean over time; linear head.

    ``(B, n_mels, T) -> (B, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, n_mels: int, cfg: Cnn1dConfig) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.cfg = cfg
        self.features = nn.Sequential(
            *(
                ConvBlock1d(c_in, c_out, cfg.kernel_size)
                for c_in, c_out in pairwise([n_mels, *cfg.channels])
            )
        )
        self.head = MaxMeanHead(cfg.channels[-1], num_classes, cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.n_mels)
        return self.head(self.features(x))  # (B, n_mels, T) -> (B, C, T') -> (B, K)
