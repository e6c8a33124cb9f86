"""``cnn2d``: a 2-D CNN on the log-mel image, after the PANNs / DCASE baseline CNNs."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from torch import Tensor, nn

from audiotag.models.heads import HeadConfig, init_weights
from audiotag.models.layers import AttentionHead, MaxMeanHead, PoolKind, check_input, conv_stack_2d
from audiotag.models.registry import ChannelList, DropoutRate, register_model

FreqReduce = Literal["mean", "flatten"]
ClipPool = Literal["maxmean", "attention"]


class Cnn2dConfig(HeadConfig):
    """Params of ``cnn2d`` (plus the shared head options of :class:`HeadConfig`).

    Attributes:
        channels: output channels of each conv block; each block halves frequency and time.
        residual: residual blocks (two conv3x3 and a shortcut, :class:`ResBlock2d`).
        convs_per_block: conv3x3-BN-act layers per plain block (PANNs: 2); residual blocks
            always have two.
        pool: the pooling ending each block: ``avg`` (PANNs) or ``max``.
        time_pools: how many blocks (the first ones) halve time as well as frequency;
            the others halve frequency only (None: every block), so the head sees finer
            time steps: pitch trajectories (vibrato, chirps) survive, at more compute.
        freq_reduce: how the last map's frequency bands become one feature vector per
            frame: ``flatten`` keeps each band's channels apart (``C * F'`` features), so
            the head knows *where* in frequency a pattern is; ``mean`` averages them (as
            PANNs, whose receptive field spans the whole spectrum), which makes a shallow
            net blind to pitch: a pattern one octave up gives the same features.
        clip_pool: how frame features become clip logits: ``maxmean`` concatenates the
            max and the mean over time before the head; ``attention`` gives each frame
            logits and a softmax weight over time per class (as ``crnn``).
        dropout: dropout before each head layer.
        block_dropout: dropout after every conv block (0: none).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    # what a checkpoint saved before these keys existed was built with (load_checkpoint)
    ABSENT_IN_OLD_CHECKPOINTS: ClassVar[dict[str, Any]] = {
        "convs_per_block": 1, "pool": "max", "freq_reduce": "mean", "time_pools": None,
        "clip_pool": "maxmean"}

    channels: ChannelList = Field(default_factory=lambda: [16, 32, 64])
    residual: bool = False
    convs_per_block: int = Field(default=2, ge=1)
    pool: PoolKind = "avg"
    time_pools: int | None = Field(default=None, ge=0)
    freq_reduce: FreqReduce = "flatten"
    clip_pool: ClipPool = "attention"
    dropout: DropoutRate = 0.2
    block_dropout: DropoutRate = 0.0

    @field_validator("time_pools")
    @classmethod
    def _at_most_every_block(cls, value: int | None, info: ValidationInfo) -> int | None:
        blocks = len(info.data.get("channels") or [])  # channels is validated first
        if value is not None and blocks and value > blocks:
            raise ValueError(f"{value} with {blocks} blocks (channels); at most {blocks}")
        return value

    @field_validator("convs_per_block")
    @classmethod
    def _residual_has_two(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("residual") and value != 2:  # residual is validated first
            raise ValueError(f"{value} with residual: true; a residual block has two "
                             "convolutions (set 2, or residual: false)")
        return value


def pooled_bands(n_mels: int, blocks: int) -> int:
    """Frequency bands left after ``blocks`` ceil-mode 2x poolings of ``n_mels``."""
    for _ in range(blocks):
        n_mels = -(-n_mels // 2)
    return n_mels


@register_model("cnn2d", config=Cnn2dConfig)
class Cnn2d(nn.Module):
    """2-D CNN: conv blocks (plain or residual) halve frequency and time; the bands are
    flattened (or averaged), then attention pooling of frame logits (or max+mean over
    time and the head).

    ``(B, n_mels, T) -> (B, num_classes)`` logits.
    """

    def __init__(self, num_classes: int, n_mels: int, cfg: Cnn2dConfig) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.cfg = cfg
        self.features = conv_stack_2d(cfg.channels, cfg.activation, cfg.residual,
                                      dropout=cfg.block_dropout, convs=cfg.convs_per_block,
                                      pool=cfg.pool, time_pools=cfg.time_pools)
        bands = pooled_bands(n_mels, len(cfg.channels)) if cfg.freq_reduce == "flatten" else 1
        width = cfg.channels[-1] * bands
        self.head: nn.Module
        if cfg.clip_pool == "attention":
            self.dropout = nn.Dropout(cfg.dropout)
            self.head = AttentionHead(width, num_classes, cfg)
        else:
            self.head = MaxMeanHead(width, num_classes, cfg=cfg)
        init_weights(self, cfg.init, cfg.activation)

    def forward(self, x: Tensor) -> Tensor:
        h = self._frames(x)  # (B, D, T')
        if self.cfg.clip_pool == "attention":
            h = self.dropout(h.transpose(1, 2))  # (B, T', D): the attention head's frames
        return self.head(h)  # (B, K)

    def frame_outputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``clip_pool: attention``: ``(clip_logits (B, K), frame_logits (B, T', K),
        attention weights (B, T', K))``."""
        if self.cfg.clip_pool != "attention":
            raise ValueError("models.cnn2d: frame outputs need clip_pool: attention")
        assert isinstance(self.head, AttentionHead)
        return self.head.pool(self.dropout(self._frames(x).transpose(1, 2)))  # (B, T', D)

    def _frames(self, x: Tensor) -> Tensor:
        """``(B, n_mels, T) -> (B, D, T')``: one feature vector per pooled frame."""
        check_input(x, self.n_mels)
        h = self.features(x.unsqueeze(1))  # (B, C, F', T')
        if self.cfg.freq_reduce == "flatten":
            return h.flatten(1, 2)  # (B, C * F', T'): channel c of band f is feature c * F' + f
        return h.mean(dim=2)  # (B, C, T')
