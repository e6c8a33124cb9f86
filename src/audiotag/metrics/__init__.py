"""Evaluation metrics."""

from audiotag.metrics.lwlrap import LwlrapResult, lwlrap, per_class_lwlrap

__all__ = ["LwlrapResult", "lwlrap", "per_class_lwlrap"]
