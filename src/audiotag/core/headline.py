"""The headline metrics file of a model, ensemble or cross-validated model
(``metrics/<name>.json``, declared under ``metrics:`` in dvc.yaml): the few numbers
``dvc exp show`` and ``dvc metrics show`` list, and what ``audiotag compare`` and
``audiotag tune`` read back from ``dvc exp show --json``. Torch-free.

The numbers sit under the run's name (``{"crnn": {"lwlrap": 0.89, ...}}``), so that DVC
names each column ``crnn.lwlrap``: DVC names a column by its key alone when no other
metrics file has that key, and ``metrics/crnn.json:lwlrap`` otherwise, which made the
table of a two-model sweep too wide to read (docs/experiments.md#reading-the-table).
Everything else a stage measures is in ``metrics/details/<name>.json``; wall-clock times
are in ``metrics/timings/`` (docs/reproducibility.md).
"""

from __future__ import annotations

from typing import Any

# in this order, those the task has: test lwlrap, validation lwlrap (what `audiotag tune`
# optimises by default), single-label accuracy, regression MSE
KEYS = ("lwlrap", "valid_lwlrap", "accuracy", "regression_mse")
# an ensemble's: no validation lwlrap (nothing is tuned or selected on it); a
# cross-validated model's: its CV lwlrap, then its fold ensemble's as an ensemble's
ENSEMBLE_KEYS = ("lwlrap", "accuracy", "regression_mse")
CV_KEYS = ("cv_lwlrap_mean", "cv_lwlrap_sd", *ENSEMBLE_KEYS)


def headline(name: str, details: dict[str, Any], keys: tuple[str, ...] = KEYS) -> dict[str, Any]:
    """The headline file's content for run ``name`` from its details (every metric):
    ``{name: {key: value}}`` for the ``keys`` it has (not None)."""
    return {name: {key: details[key] for key in keys if details.get(key) is not None}}


def headline_values(data: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """The numbers of headline file content ``data`` written for run ``name`` (``{}`` when
    it has none, e.g. an ensemble skipped for lack of members). Experiments made before the
    numbers were nested hold them at the top level: read as they are."""
    data = data or {}
    values = data.get(name)
    if isinstance(values, dict):
        return values
    return data if "lwlrap" in data else {}
