"""``cnn1d``: a 1-D CNN over frames, with the mel bands as input channels."""

from __future__ import annotations

from torch import Tensor, nn

from audiotag.contracts.model_configs import Cnn1dConfig
from audiotag.models.heads import init_weights, make_activation
from audiotag.models.layers import MaxMeanHead, check_input, conv_stack_1d
from audiotag.models.outputs import Outputs, Tagger
from audiotag.models.registry import register_model


@register_model("cnn1d")
class Cnn1d(Tagger):
    """1-D CNN: conv blocks halve time; max+mean over time; linear head.

    ``(B, n_mels, T) -> (B, num_classes)`` logits; ``n_mels`` is the feature dimension
    (mel bands, MFCCs, chroma, ...). With ``n_mels == 1`` the input is a raw waveform
    ``(B, 1, samples)``: a strided conv stem (stride 8, then max-pool 4: 32 samples per
    step) turns it into ``channels[0]`` learned bands before the blocks.
    """

    def __init__(self, num_classes: int, n_mels: int, cfg: Cnn1dConfig) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.cfg = cfg
        first = n_mels
        self.stem: nn.Module = nn.Identity()
        if n_mels == 1:
            first = cfg.channels[0]
            self.stem = nn.Sequential(
                nn.Conv1d(1, first, kernel_size=32, stride=8, padding=12, bias=False),
                nn.BatchNorm1d(first),
                make_activation(cfg.activation, inplace=True),
                nn.MaxPool1d(4, ceil_mode=True),
            )
        self.features = conv_stack_1d(first, cfg.channels, cfg.kernel_size, cfg.activation,
                                      cfg.residual, cfg.block_dropout)
        self.head = MaxMeanHead(cfg.channels[-1], num_classes, cfg=cfg)
        init_weights(self, cfg.init, cfg.activation)

    def outputs(self, x: Tensor) -> Outputs:
        check_input(x, self.n_mels)
        h = self.features(self.stem(x))  # (B, n_mels, T) -> (B, C, T')
        return Outputs(self.head(h))  # (B, K)
