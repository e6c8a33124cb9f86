"""``lstm`` and ``gru``: recurrent nets over feature frames, for variable-length input.

Variable lengths (``lengths`` convention): ``forward(x, lengths=None)`` takes a batch
``x (B, n_mels, T)`` whose item ``b`` holds ``lengths[b]`` valid frames (1 <= lengths[b]
<= T) followed by padding at the end (as :func:`audiotag.features.store.collate_clips`
pads beat-synchronous sequences), and ``lengths`` a ``(B,)`` integer tensor. The
recurrent layers then run on packed sequences and pooling ignores the padding, so a
clip's logits do not depend on how much the batch padded it. Without ``lengths`` every
frame counts. Models that take ``lengths`` set the class attribute
``accepts_lengths = True``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from audiotag.contracts.model_configs import RnnConfig
from audiotag.models.heads import ClassifierHead, init_weights
from audiotag.models.layers import SequencePool, check_input, frame_mask
from audiotag.models.outputs import Outputs, Tagger
from audiotag.models.registry import register_model


class RecurrentNet(Tagger):
    """Recurrent net over frames -> pooled clip features -> classifier head.

    ``(B, n_mels, T)`` (+ optional ``lengths (B,)``) ``-> (B, num_classes)`` logits.
    Subclasses choose the cell (:class:`nn.LSTM` or :class:`nn.GRU`).
    """

    cell: ClassVar[type[nn.RNNBase]]
    accepts_lengths = True  # outputs/forward(x, lengths) pack the padded batch

    def __init__(self, num_classes: int, n_mels: int, cfg: RnnConfig) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.cfg = cfg
        self.rnn = self.cell(n_mels, cfg.hidden, num_layers=cfg.layers, batch_first=True,
                             bidirectional=cfg.bidirectional,
                             dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        width = cfg.hidden * (2 if cfg.bidirectional else 1)
        self.pool = SequencePool(cfg.pooling, width) if cfg.pooling != "last" else None
        self.head = ClassifierHead(width, num_classes, cfg)
        init_weights(self, cfg.init, cfg.activation)

    def outputs(self, x: Tensor, lengths: Tensor | None = None) -> Outputs:  # type: ignore[override]
        check_input(x, self.n_mels)
        embedding = self.clip_features(x, lengths)  # (B, D)
        return Outputs(self.head(embedding), embedding=embedding)  # (B, K)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:  # type: ignore[override]
        return self.outputs(x, lengths).clipwise

    def clip_features(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Pooled recurrent features ``(B, D)``, ``D = hidden * directions``."""
        batch, _, frames = x.shape
        seq = x.transpose(1, 2)  # (B, T, F)
        if lengths is None:
            out, state = self.rnn(seq)  # (B, T, D)
        else:
            lengths = torch.as_tensor(lengths).clamp(max=frames)
            packed = pack_padded_sequence(seq, lengths.cpu(), batch_first=True,
                                          enforce_sorted=False)
            out, state = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=frames)
        if self.pool is None:  # last: final hidden state of each direction (B, D)
            h_n = state[0] if isinstance(state, tuple) else state  # (layers * dirs, B, H)
            dirs = 2 if self.cfg.bidirectional else 1
            return h_n[-dirs:].transpose(0, 1).reshape(batch, -1)
        return self.pool(out, frame_mask(lengths, frames, batch))  # (B, D)


@register_model("lstm")
class Lstm(RecurrentNet):
    """(Bi)LSTM over frames; see :class:`RecurrentNet`."""

    cell = nn.LSTM


@register_model("gru")
class Gru(RecurrentNet):
    """(Bi)GRU over frames; see :class:`RecurrentNet`."""

    cell = nn.GRU
