"""``crnn``: gated convolutional recurrent net after Xu et al. 2017 (arXiv:1710.00343).

Gated (GLU) conv blocks pool frequency only, so the frame rate is kept; the remaining
frequency bands are collapsed by a max, a bidirectional GRU runs over frames, and an
attention head turns frame logits into clip logits (see :class:`AttentionHead`).
"""

from __future__ import annotations

from itertools import pairwise

from torch import Tensor, nn

from audiotag.contracts.model_configs import CrnnConfig
from audiotag.models.heads import init_weights
from audiotag.models.layers import AttentionHead, GatedConvBlock2d, check_input
from audiotag.models.outputs import Outputs, Tagger
from audiotag.models.registry import register_model


@register_model("crnn")
class Crnn(Tagger):
    """Gated CNN -> max over frequency -> BiGRU -> attention pooling.

    ``(B, n_mels, T) -> (B, num_classes)`` logits; :meth:`outputs` also gives the
    frame logits and attention weights (for localisation plots).
    """

    def __init__(self, num_classes: int, n_mels: int, cfg: CrnnConfig) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.cfg = cfg
        self.features = nn.Sequential(
            *(
                GatedConvBlock2d(c_in, c_out, cfg.freq_pool)
                for c_in, c_out in pairwise([1, *cfg.channels])
            )
        )
        self.gru = nn.GRU(
            cfg.channels[-1],
            cfg.gru_hidden,
            num_layers=cfg.gru_layers,
            batch_first=True,
            bidirectional=True,
            dropout=cfg.dropout if cfg.gru_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = AttentionHead(2 * cfg.gru_hidden, num_classes, cfg)
        init_weights(self, cfg.init, cfg.activation)

    def outputs(self, x: Tensor) -> Outputs:
        """Clip logits ``(B, K)``, frame logits and attention weights ``(B, T, K)``."""
        check_input(x, self.n_mels)
        h = self.features(x.unsqueeze(1))  # (B, C, F', T)
        h = h.amax(dim=2).transpose(1, 2)  # (B, T, C)
        h, _ = self.gru(h)  # (B, T, 2H)
        return self.head(self.dropout(h))
