"""Checkpoint metadata: what a ``model.pt`` says about the model beside its weights.

train@ (and cv_fold@, the label-cleaning detector) saves ``{"state_dict": ..., **meta}``
with ``meta`` built here; evaluate@, weights@, cv_fold@, ``audiotag predict`` and
``audiotag export`` read it back as a :class:`CheckpointMeta`, so a key is named once. The
saved dict is a plain one (``torch.load(..., weights_only=True)`` reads it): the build
settings in the order of the fields below, then the kept epoch's record (``epoch``,
``valid_lwlrap``, ``valid_loss``, ...; :attr:`CheckpointMeta.record`) in its own order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from audiotag.contracts.tables import TARGET_PREFIX

OPTIONAL = ("init_from", "processes")  # saved only when set
REQUIRED = ("model_name", "model_params", "num_classes", "n_mels", "classes", "features",
            "stats")  # what a file needs to be an audiotag checkpoint (with state_dict)


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's metadata (everything but the weights).

    ``model_params`` is every key of the model's config; ``num_classes`` the model's
    outputs (class scores, then one per regression target); ``n_mels`` its input feature
    dimension; ``features`` the FeaturesConfig dump and ``stats`` the normalisation
    (``shift``, ``scale``) of the store it trained on. ``record``: the kept epoch's numbers.
    Checkpoints older than ``task`` are multi-label.
    """

    model_name: str
    model_params: dict[str, Any]
    num_classes: int
    n_mels: int
    task: str = "multilabel"
    single_label: bool = False
    classes: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    features: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    n_parameters: int | None = None
    platform: dict[str, Any] | None = None
    init_from: Any = None  # train.init_from, when the run started from other weights
    processes: int | None = None  # DistributedDataParallel processes, when several
    record: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any]) -> CheckpointMeta:
        """The metadata of a loaded checkpoint dict (``state_dict`` is left out; any key
        that is not a field belongs to the epoch record)."""
        names = {f.name for f in fields(cls)} - {"record"}
        known = {k: v for k, v in saved.items() if k in names}
        record = {k: v for k, v in saved.items() if k not in names and k != "state_dict"}
        known["targets"] = list(known.get("targets") or [])
        return cls(**known, record=record)

    def to_dict(self) -> dict[str, Any]:
        """The dict saved beside ``state_dict`` (optional keys only when set)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "record"}
        for key in OPTIONAL:
            if out[key] is None:
                del out[key]
        return {**out, **self.record}

    def with_record(self, record: Mapping[str, Any]) -> CheckpointMeta:
        """This metadata with the epoch ``record`` (e.g. the kept epoch's numbers)."""
        return CheckpointMeta(**{f.name: getattr(self, f.name) for f in fields(self)
                                 if f.name != "record"}, record=dict(record))

    @property
    def epoch(self) -> int:
        """The kept epoch (1-based)."""
        return int(self.record["epoch"])

    @property
    def valid_lwlrap(self) -> float | None:
        return self.record.get("valid_lwlrap")

    @property
    def threshold(self) -> float | None:
        """A decision threshold saved with the model, if any."""
        value = self.record.get("threshold")
        return None if value is None else float(value)

    @property
    def n_class_outputs(self) -> int:
        """How many outputs are class scores (none for regression)."""
        return 0 if self.task == "regression" else len(self.classes)

    @property
    def outputs(self) -> list[str]:
        """Names of the model's outputs: its classes (none for regression), then targets."""
        return list(self.classes)[:self.n_class_outputs] + [str(t) for t in self.targets]

    @property
    def target_names(self) -> list[str]:
        """The regression targets without the manifest's ``targets_`` prefix."""
        return [str(t).removeprefix(TARGET_PREFIX) for t in self.targets]
