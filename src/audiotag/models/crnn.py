"""``crnn``: gated convolutional recurrent net after Xu et al. 2017 (arXiv:1710.00343).

Gated (GLU) conv blocks pool frequency only, so the frame rate is kept; the remaining
frequency bands are collapsed by a max, a bidirectional GRU runs over frames, and an
attention head turns frame logits into clip logits (see :class:`AttentionHead`).
``gru_activation: sigmoid`` swaps the GRU's candidate-state tanh for a sigmoid (the Russian
notebook's GCNN, a Keras ``GRU(activation="sigmoid")``): the same ``nn.GRU`` weights, run
step by step by :func:`gru_with_activation`.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import torch
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
        if self.cfg.gru_activation == "tanh":
            h, _ = self.gru(h)  # (B, T, 2H)
        else:
            h = gru_with_activation(self.gru, h, torch.sigmoid)
        return self.head(self.dropout(h))


def _gru_direction(x: Tensor, weights: list[Tensor], act: Callable[[Tensor], Tensor],
                   reverse: bool) -> Tensor:
    """One direction of one GRU layer, ``(B, T, I) -> (B, T, H)``, torch's gate order
    (reset, update, candidate) with ``act`` in place of the candidate's tanh."""
    w_ih, w_hh, b_ih, b_hh = weights
    gx = x @ w_ih.T + b_ih  # (B, T, 3H): the input's part of every gate, all steps at once
    h = x.new_zeros(x.shape[0], w_hh.shape[1])
    steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    out = [h] * x.shape[1]
    for t in steps:
        x_r, x_z, x_n = gx[:, t].chunk(3, dim=1)
        h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        h = (1 - z) * act(x_n + r * h_n) + z * h
        out[t] = h
    return torch.stack(out, dim=1)


def gru_with_activation(gru: nn.GRU, x: Tensor, act: Callable[[Tensor], Tensor]) -> Tensor:
    """``gru(x)[0]`` (batch first, zero initial state) with ``act`` as the candidate-state
    activation: ``act=torch.tanh`` gives ``nn.GRU``'s output (up to rounding)."""
    for layer in range(gru.num_layers):
        if layer > 0 and gru.dropout > 0:
            x = nn.functional.dropout(x, gru.dropout, gru.training)
        outs = []
        for suffix in ("", "_reverse")[: 2 if gru.bidirectional else 1]:
            names = (f"weight_ih_l{layer}{suffix}", f"weight_hh_l{layer}{suffix}",
                     f"bias_ih_l{layer}{suffix}", f"bias_hh_l{layer}{suffix}")
            weights = [getattr(gru, name) for name in names]
            outs.append(_gru_direction(x, weights, act, reverse=bool(suffix)))
        x = torch.cat(outs, dim=2)
    return x
