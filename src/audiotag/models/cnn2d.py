"""``cnn2d``: a 2-D CNN on the log-mel image, after the PANNs / DCASE baseline CNNs."""

from __future__ import annotations

from torch import Tensor, nn

from audiotag.contracts.model_configs import Cnn2dConfig
from audiotag.models.heads import init_weights
from audiotag.models.layers import AttentionHead, MaxMeanHead, check_input, conv_stack_2d
from audiotag.models.outputs import Outputs, Tagger
from audiotag.models.registry import register_model


def pooled_bands(n_mels: int, blocks: int) -> int:
    """Frequency bands left after ``blocks`` ceil-mode 2x poolings of ``n_mels``."""
    for _ in range(blocks):
        n_mels = -(-n_mels // 2)
    return n_mels


@register_model("cnn2d")
class Cnn2d(Tagger):
    """2-D CNN: conv blocks (plain or residual) halve frequency and time; the bands are
    flattened (or averaged), then attention pooling of frame logits (or max+mean over
    time and the head).

    ``(B, n_mels, T) -> (B, num_classes)`` logits; with ``clip_pool: attention``
    :meth:`outputs` also gives the frame logits and attention weights.
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

    def outputs(self, x: Tensor) -> Outputs:
        h = self._frames(x)  # (B, D, T')
        if isinstance(self.head, AttentionHead):  # clip_pool: attention
            return self.head(self.dropout(h.transpose(1, 2)))  # frames (B, T', D)
        return Outputs(self.head(h))  # (B, K)

    def _frames(self, x: Tensor) -> Tensor:
        """``(B, n_mels, T) -> (B, D, T')``: one feature vector per pooled frame."""
        check_input(x, self.n_mels)
        h = self.features(x.unsqueeze(1))  # (B, C, F', T')
        if self.cfg.freq_reduce == "flatten":
            return h.flatten(1, 2)  # (B, C * F', T'): channel c of band f is feature c * F' + f
        return h.mean(dim=2)  # (B, C, T')
