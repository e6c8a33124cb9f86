"""``audiotag export``: TorchScript / ONNX files whose logits match the eager model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from audiotag.cli import main as cli_main
from audiotag.export import PARITY_ATOL, ExportError, _run_exported, export_model
from audiotag.features.config import FeaturesConfig
from audiotag.models import create_model
from audiotag.training.checkpoint import load_checkpoint, save_checkpoint

FEATURES = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, fmax=4000.0,
                clip_seconds=0.5)
SMALL = {"cnn2d": {"channels": [4, 8]}, "cnn1d": {}, "crnn": {}, "gru": {}}


def _checkpoint(tmp_path, name, params=None, **features):
    cfg = FeaturesConfig(**{**FEATURES, **features})
    dim = 1 if cfg.kind == "waveform" else cfg.n_mels
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, n_mels=dim, **(params or {}))
    meta = {"model_name": name, "model_params": params or {}, "num_classes": 5, "n_mels": dim,
            "task": "multilabel", "classes": list("abcde"), "targets": [],
            "features": cfg.model_dump(), "n_parameters": 1,
            "stats": {"shift": [0.0] * dim, "scale": [1.0] * dim}}
    path = tmp_path / f"{name}.pt"
    save_checkpoint(path, model, meta)
    return path


# the ONNX export of a recurrent model takes ~16 s of CPU: `make test` runs it, test-fast not
@pytest.mark.parametrize("name, fmt", [
    pytest.param(name, fmt, marks=[pytest.mark.slow] if fmt == "onnx" and name in ("crnn", "gru")
                 else []) for fmt in ("torchscript", "onnx")
    for name in ("cnn2d", "cnn1d", "crnn", "gru")])
def test_export_matches_eager_for_any_batch_size(tmp_path, name, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    ckpt = _checkpoint(tmp_path, name, SMALL[name])
    out = tmp_path / f"{name}.{fmt}"
    sidecar = export_model(ckpt, fmt, out)
    assert sidecar["parity_max_abs_diff"] <= PARITY_ATOL
    model, _ = load_checkpoint(ckpt)
    x = torch.randn(5, 16, 1 + 4000 // 128)  # a batch size other than the export's and check's
    with torch.no_grad():
        eager = model(x).numpy()
    assert np.abs(_run_exported(fmt, out, x) - eager).max() <= PARITY_ATOL
    saved = json.loads((tmp_path / f"{name}.{fmt}.json").read_text())
    assert saved["classes"] == list("abcde") and saved["input"]["shape"] == ["batch", 16, 32]


def test_waveform_and_beat_sync_models_are_refused(tmp_path):
    ckpt = _checkpoint(tmp_path, "cnn1d", kind="waveform")
    with pytest.raises(ExportError, match="raw waveforms .* export supports spectrogram"):
        export_model(ckpt, "torchscript", tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists()
    ckpt = _checkpoint(tmp_path, "gru", beat_sync=True)
    with pytest.raises(ExportError, match="beat_sync=true"):
        export_model(ckpt, "onnx", tmp_path / "b.onnx")


def test_export_cli_default_path_and_clear_error(tmp_path, caplog):
    ckpt = _checkpoint(tmp_path, "cnn2d", SMALL["cnn2d"])
    cli_main(["export", "--checkpoint", str(ckpt), "--format", "torchscript"])
    assert (tmp_path / "cnn2d.ts.pt").exists() and (tmp_path / "cnn2d.ts.pt.json").exists()
    wave = _checkpoint(tmp_path, "cnn1d", kind="waveform")
    with pytest.raises(SystemExit) as stop:
        cli_main(["export", "--checkpoint", str(wave), "--format", "torchscript"])
    assert stop.value.code == 2 and "features.kind=waveform" in caplog.text
