"""The predictions table: ``clip_id, labels``, then one column per output (class scores,
then raw ``targets_*`` regression outputs), one row per clip.

evaluate@ writes ``predictions/<model>.csv`` (and ``predictions/valid/``), cv_fold@ its
fold's ``oof.csv`` and ``test.csv``, ensemble@ and cv@ ``ensembles/<name>.csv``; ensemble@,
cv@ and ``audiotag compare`` read them. Built by :func:`predictions_table`, written by
:func:`write_predictions_table`, read and checked by :func:`read_predictions`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from audiotag.contracts.tables import (
    TARGET_PREFIX,
    labels_to_matrix,
    read_clip_table,
    split_labels,
    write_csv,
)

INDEX_COLUMNS = ("clip_id", "labels")


@dataclass
class ClipPredictions:
    """One row per clip, in the order of ``index``."""

    classes: list[str]
    index: pd.DataFrame  # the store's index rows: clip_id, subset, fold, labels, ...
    scores: np.ndarray  # (clips, outputs): class scores, then raw regression outputs
    targets: np.ndarray  # (clips, classes) multi-hot labels
    seconds: float  # wall time of the forward passes (inference time)

    @property
    def clip_ids(self) -> list[str]:
        return self.index["clip_id"].tolist()

    def __len__(self) -> int:
        return len(self.index)


def predictions_table(pred: ClipPredictions | None, outputs: list[str]) -> pd.DataFrame:
    """``clip_id, labels, <one column per output>``: a split's scores clip by clip (class
    scores, then raw regression outputs); ``pred`` None: the header alone."""
    clash = set(INDEX_COLUMNS) & set(outputs)
    if clash:
        raise ValueError(f"a class or target is named {sorted(clash)[0]!r}, which is a "
                         "column of the per-clip predictions; rename it")
    if pred is None:
        return pd.DataFrame(columns=[*INDEX_COLUMNS, *outputs])
    if pred.scores.shape[1] != len(outputs):
        raise ValueError(f"model gives {pred.scores.shape[1]} outputs; the checkpoint names "
                         f"{len(outputs)}")
    table = pd.DataFrame(pred.scores, columns=outputs)
    table.insert(0, "labels", pred.index["labels"].to_numpy())
    table.insert(0, "clip_id", pred.index["clip_id"].to_numpy())
    return table


def write_predictions_table(pred: ClipPredictions | None, outputs: list[str],
                            path: str | os.PathLike[str]) -> None:
    """:func:`predictions_table` written atomically at ``path``."""
    write_csv(predictions_table(pred, outputs), path)


def score_classes(table: pd.DataFrame) -> list[str]:
    """The class columns of a predictions table (``targets_*`` outputs left out)."""
    return [str(c) for c in table.columns[len(INDEX_COLUMNS):]
            if not str(c).startswith(TARGET_PREFIX)]


def check_predictions(table: pd.DataFrame, where: str) -> list[str]:
    """The table's class columns; :class:`ValueError` naming ``where`` unless it starts
    with ``clip_id, labels`` and every label is a class column."""
    if list(table.columns[:len(INDEX_COLUMNS)]) != list(INDEX_COLUMNS):
        raise ValueError(f"{where}: expected the columns clip_id, labels, then one per class; "
                         f"got {list(table.columns[:3])}")
    classes = score_classes(table)
    unknown = sorted({x for lab in table["labels"] for x in split_labels(lab)} - set(classes))
    if unknown:
        raise ValueError(f"{where}: label {unknown[0]!r} is not a class column")
    return classes


def read_predictions(path: str | os.PathLike[str]) -> ClipPredictions:
    """A predictions CSV as :class:`ClipPredictions` (class scores only; ``targets_*``
    regression columns are dropped), checked by :func:`check_predictions`."""
    table = read_clip_table(path)
    classes = check_predictions(table, str(path))
    try:
        scores = table[classes].to_numpy(dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: a class score is not a number ({err})") from None
    return ClipPredictions(classes=list(classes), index=table[list(INDEX_COLUMNS)],
                           scores=scores, targets=labels_to_matrix(table["labels"], classes),
                           seconds=0.0)
