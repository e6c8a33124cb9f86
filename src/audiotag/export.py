"""``audiotag export``: a spectrogram model's checkpoint as TorchScript or ONNX.

The exported graph is the model alone: input the normalised feature window
``(batch, dim, frames)`` float32 (what :class:`audiotag.features.store.ClipPipeline` makes
from an audio file), output the logits ``(batch, outputs)``; the batch size is free. A JSON
sidecar (``<out>.json``) holds what a consumer needs around it: classes, regression
targets, task (sigmoid or softmax scores), the features config, the normalisation
``shift``/``scale`` and the window length. Each export is checked against the eager model
(largest absolute difference of the logits at most ``PARITY_ATOL``) before it is kept.

Without ``out`` the file goes to ``exports/<model>.onnx`` or ``exports/<model>.ts.pt`` under
the current directory (:func:`default_out`; ``exports/`` is git-ignored): never beside the
checkpoint, whose folder (``models/<model>/``) is a DVC output that a new file would mark
changed, so the next ``dvc repro`` would retrain the model.

Not exportable (:class:`ExportError`): waveform models (``features.kind: waveform``) and
variable-length ``beat_sync`` sequences, whose input is not a fixed spectrogram window.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.core.io import atomic_path, write_json
from audiotag.features.config import FeaturesConfig
from audiotag.features.frontend import n_frames
from audiotag.model_file import open_checkpoint

log = logging.getLogger(__name__)
FORMATS = ("torchscript", "onnx")
PARITY_ATOL = 1e-4  # largest |exported - eager| logit accepted
ONNX_OPSET = 18
EXPORTS_DIR = Path("exports")  # the default place of exports: outside every DVC output
SUFFIXES = {"torchscript": ".ts.pt", "onnx": ".onnx"}


class ExportError(ValueError):
    """A checkpoint that cannot be exported (the message says why), or a missing exporter."""


def input_shape(meta: CheckpointMeta) -> tuple[int, int]:
    """``(dim, frames)`` of the model input a checkpoint expects; :class:`ExportError` for
    inputs that are not a fixed spectrogram window."""
    features, name = meta.features, meta.model_name
    if features["kind"] == "waveform":
        raise ExportError(f"{name}: trained on raw waveforms (features.kind=waveform); export "
                          "supports spectrogram models (logmel, stft, mfcc, chroma and stacks)")
    if features.get("beat_sync"):
        raise ExportError(f"{name}: trained on variable-length beat-synchronous sequences "
                          "(features.beat_sync=true); export needs a fixed window")
    return int(meta.n_mels), n_frames(FeaturesConfig.model_validate(features))


def _torchscript(model: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    with warnings.catch_warnings():  # shape checks traced as constants: check_parity decides
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, example, check_trace=False)
    with atomic_path(out) as tmp:
        torch.jit.save(traced, str(tmp))


def _onnx(model: torch.nn.Module, example: torch.Tensor, out: Path) -> None:
    try:
        import onnx  # noqa: F401  # the exporter's and the checker's dependencies
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(f"--format onnx needs the onnx extra (pip install 'audiotag[onnx]'):"
                          f" {err}") from err
    batch = torch.export.Dim("batch", min=1)
    with atomic_path(out) as tmp:
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=ONNX_OPSET,
                                    input_names=["features"], output_names=["logits"],
                                    dynamic_shapes={"x": {0: batch}}, verbose=False)
        program.save(str(tmp))


def _run_exported(fmt: str, path: Path, x: torch.Tensor) -> np.ndarray:
    """Logits of the exported file at ``path`` for ``x`` (CPU)."""
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(str(path), map_location="cpu")(x).numpy()
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def check_parity(fmt: str, path: Path, model: torch.nn.Module,
                 shape: tuple[int, int], batch: int = 3) -> float:
    """Largest ``|exported - eager|`` logit on a random batch (a size other than the one
    exported with, so a fixed batch dimension fails); :class:`ExportError` above
    ``PARITY_ATOL``."""
    x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager = model(x).numpy()
    exported = _run_exported(fmt, path, x)
    if exported.shape != eager.shape:
        raise ExportError(f"{path}: exported model gives {exported.shape} for a batch of "
                          f"{batch}, eager {eager.shape}")
    diff = float(np.abs(exported - eager).max())
    if not diff <= PARITY_ATOL:
        raise ExportError(f"{path}: exported logits differ from eager by {diff:.3g} "
                          f"(> {PARITY_ATOL}); not kept")
    return diff


def default_out(model_name: str, fmt: str) -> Path:
    """``exports/<model>.ts.pt`` or ``exports/<model>.onnx``, relative to the current
    directory: where an export goes unless ``--out`` says otherwise."""
    return EXPORTS_DIR / f"{model_name}{SUFFIXES[fmt]}"


def export_model(checkpoint: str | os.PathLike[str], fmt: str,
                 out: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Export ``checkpoint`` to ``out`` (default: :func:`default_out`; its folder is
    created) in ``fmt`` plus the ``<out>.json`` sidecar; returns the sidecar's content
    (with the parity figure)."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    model, meta = open_checkpoint(checkpoint, "cpu")
    shape = input_shape(meta)
    example = torch.zeros(2, *shape)  # (B, dim, frames)
    out = default_out(meta.model_name, fmt) if out is None else Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        (_torchscript if fmt == "torchscript" else _onnx)(model, example, out)
        diff = check_parity(fmt, out, model, shape)
    except ExportError:
        out.unlink(missing_ok=True)
        raise
    except Exception as err:  # the exporters raise many types: name the model and format
        out.unlink(missing_ok=True)
        raise ExportError(f"{meta.model_name}: {fmt} export failed: "
                          f"{type(err).__name__}: {err}") from err
    sidecar = {
        "format": fmt, "model_name": meta.model_name, "checkpoint": str(checkpoint),
        "input": {"name": "features", "shape": ["batch", *shape], "dtype": "float32",
                  "normalised": "(features - shift) / scale"},
        "output": {"name": "logits", "columns": meta.outputs},
        "task": meta.task, "classes": meta.classes,
        "targets": meta.targets, "features": meta.features,
        "shift": meta.stats["shift"], "scale": meta.stats["scale"],
        "parity_max_abs_diff": diff,
    }
    if meta.stats.get("projection") is not None:  # features.pca: (bands, n) after normalising
        sidecar["input"]["normalised"] = "((features - shift) / scale) @ projection"
        sidecar["projection"] = meta.stats["projection"]
    write_json(out.with_name(out.name + ".json"), sidecar)
    log.info("wrote %s (%s, max |diff| vs eager %.2g)", out, fmt, diff)
    return sidecar
