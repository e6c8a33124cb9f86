"""The one output contract of every model: :class:`Outputs`, from :meth:`Tagger.outputs`.

Every model subclasses :class:`Tagger` and implements ``outputs(x)``; ``forward(x)`` is
``outputs(x).clipwise`` (so training, validation, saliency and export, which call the
module, read the clip logits of the same record). Fields a model cannot give are None:

- ``clipwise`` ``(B, K)``: clip logits, what the loss, the scores and exports use;
- ``framewise`` ``(B, T', K)``: frame logits over the model's T' output frames (models
  pooling frames with an :class:`~audiotag.models.layers.AttentionHead`: ``crnn``,
  ``cnn2d`` with ``clip_pool: attention``);
- ``attention`` ``(B, T', K)``: the weights (summing to 1 over T') that pool
  ``framewise`` into ``clipwise``;
- ``embedding`` ``(B, D)``: the clip vector the classifier head reads (models with one:
  ``lstm``, ``gru`` and the ImageNet backbones).
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from torch import Tensor, nn


class Outputs(NamedTuple):
    """What a model gives for a batch; see the module docstring for the fields."""

    clipwise: Tensor
    framewise: Tensor | None = None
    attention: Tensor | None = None
    embedding: Tensor | None = None


class Tagger(nn.Module):
    """Base of every model: ``outputs(x) -> Outputs``, ``forward(x)`` its clip logits.

    ``accepts_lengths = True`` marks a model whose ``outputs``/``forward`` take a second
    argument ``lengths`` (valid frames per item of a padded batch, see
    :mod:`audiotag.models.rnn`).
    """

    accepts_lengths: ClassVar[bool] = False

    def outputs(self, x: Tensor) -> Outputs:
        raise NotImplementedError(f"{type(self).__name__} must implement outputs(x)")

    def forward(self, x: Tensor) -> Tensor:
        return self.outputs(x).clipwise
