"""Class-list edits applied when the manifest is written: merge classes, drop rare ones.

The Greek FMA notebook merged related genres and dropped the rarest before training;
``data.merge_classes`` and ``data.min_clips_per_class`` do that for any source, so every
later stage (features, cleaning, training, evaluation) sees the edited classes.
"""

from __future__ import annotations

import logging

import pandas as pd

from audiotag.core.errors import DataSourceError
from audiotag.data.manifest import join_labels, split_labels

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("labels", "true_labels")  # true_labels: the oracle's, edited the same way


def _edit(text: object, rename: dict[str, str], keep: set[str] | None) -> str:
    names: list[str] = []
    for name in split_labels(text):
        name = rename.get(name, name)
        if name not in names and (keep is None or name in keep):
            names.append(name)
    return join_labels(names)


def reshape_classes(manifest: pd.DataFrame, classes: list[str], merge: dict[str, str],
                    min_clips: int) -> tuple[pd.DataFrame, list[str]]:
    """``(manifest, classes)`` after renaming each class of ``merge`` (old -> new name; a
    clip with both keeps one) and then dropping classes with fewer than ``min_clips``
    clips (all subsets counted). A clip left with no label is removed; the class order is
    kept (a merged class sits where its first member was). No edits: returned unchanged.
    """
    if not merge and min_clips <= 0:
        return manifest, classes
    for old in merge:
        if old not in classes:
            raise DataSourceError(f"data.merge_classes.{old}: no class {old!r} in the "
                                  f"dataset (classes: {', '.join(classes)})")
    merged = list(dict.fromkeys(merge.get(c, c) for c in classes))
    out = manifest.copy()
    for column in LABEL_COLUMNS:
        if column in out:
            out[column] = out[column].map(lambda t: _edit(t, merge, None))
    counts = out["labels"].map(split_labels).explode().value_counts()
    kept = [c for c in merged if counts.get(c, 0) >= min_clips]
    if not kept:
        raise DataSourceError(f"data.min_clips_per_class={min_clips}: no class has that many "
                              f"clips (the most: {int(counts.max()) if len(counts) else 0})")
    dropped = [c for c in merged if c not in kept]
    keep = set(kept)
    had_labels = out["labels"].map(lambda t: bool(split_labels(t)))
    for column in LABEL_COLUMNS:
        if column in out:
            out[column] = out[column].map(lambda t: _edit(t, {}, keep))
    gone = had_labels & ~out["labels"].map(lambda t: bool(split_labels(t)))
    out = out[~gone].reset_index(drop=True)
    if merge:
        log.info("data.merge_classes: %s", ", ".join(f"{a} -> {b}" for a, b in merge.items()))
    if dropped:
        log.info("data.min_clips_per_class=%d: dropped %d class(es) (%s) and %d clip(s) left "
                 "without a label", min_clips, len(dropped), ", ".join(dropped), int(gone.sum()))
    return out, kept
