"""``cnn2d``: a small 2-D CNN on the log-mel image."""

from __future__ import annotations

from pydantic import ConfigDict, Field
from torch import Tensor, nn

from audiotag.models.heads import HeadConfig, init_weights
from audiotag.models.layers import MaxMeanHead, check_input, conv_stack_2d
from audiotag.models.registry import ChannelList, DropoutRate, register_model


class Cnn2dConfig(HeadConfig):
    """Params of ``cnn2d`` (plus the shared head options of :class:`HeadConfig`).

    Attributes:
        channels: output channels of each conv block (conv3x3-BN-act-maxpool 2x2).
        residual: residual blocks (two conv3x3 and a shortcut, :class:`ResBlock2d`).
        dropout: dropout before each head layer.
        block_dropout: dropout after every conv block (0: none).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: ChannelList = Field(default_factory=lambda: [16, 32, 64])
    residual: bool = False
    dropout: DropoutRate = 0.2
    block_dropout: DropoutRate = 0.0


@register_model("cnn2d", config=Cnn2dConfig)
class Cnn2d(nn.Module):
    """2-D CNN: conv blocks (plain or residual) halve frequency and time; mean over
    frequency, max+mean over time.

    ``(B, n_mels, T) -> (B, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, n_mels: int, cfg: Cnn2dConfig) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.cfg = cfg
        self.features = conv_stack_2d(cfg.channels, cfg.activation, cfg.residual,
                                      dropout=cfg.block_dropout)
        self.head = MaxMeanHead(cfg.channels[-1], num_classes, cfg=cfg)
        init_weights(self, cfg.init, cfg.activation)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.n_mels)
        h = self.features(x.unsqueeze(1))  # (B, C, F', T')
        return self.head(h.mean(dim=2))  # (B, C, T') -> (B, K)
