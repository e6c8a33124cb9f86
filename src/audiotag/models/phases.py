"""How a model trains, declared by the model: its phases and the parameters each updates.

The training loop asks :func:`training_phases` and follows the answer; it knows no model
by name. A model that trains in one phase declares nothing (the default: one ``train``
phase over all its parameters). A model with more (the autoencoder: reconstruct, then
classify) defines ``training_phases()`` returning them in order, as nanoGPT's models
answer ``configure_optimizers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import Tensor, nn

TASK_PHASE = "train"  # the name of the phase that learns the task (from forward's logits)


@dataclass(frozen=True)
class Phase:
    """One phase of a model's training.

    ``epochs``: how many (None: ``train.epochs``, the task phase). ``parameters``: what the
    phase's optimizer updates. ``loss``: a loss of its own on the input windows
    ``(N, dim, T) -> scalar`` (e.g. reconstruction), trained with a plain AdamW and no
    augmentation; None: the task loss on ``forward``'s logits, with ``train.*``'s optimizer,
    schedule and augmentation. ``frozen``: parameters fixed from the phase's start.
    """

    name: str
    epochs: int | None
    parameters: Callable[[], Iterable[nn.Parameter]]
    loss: Callable[[Tensor], Tensor] | None = None
    frozen: Callable[[], Iterable[nn.Parameter]] | None = None


def training_phases(model: nn.Module) -> list[Phase]:
    """The phases ``model`` declares (``model.training_phases()``), else one task phase;
    exactly one of them (the last) is the task phase."""
    declared = getattr(model, "training_phases", None)
    phases = declared() if declared is not None else [Phase(TASK_PHASE, None, model.parameters)]
    if [p.loss is None for p in phases].count(True) != 1 or phases[-1].loss is not None:
        raise TypeError(f"{type(model).__name__}.training_phases(): the last phase, and only "
                        "it, must learn the task (loss=None)")
    return phases
