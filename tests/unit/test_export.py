"""``audiotag export``: TorchScript / ONNX files whose logits match the eager model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

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


def test_export_cli_default_path_and_clear_error(tmp_path, caplog, monkeypatch):
    """Without --out the export goes to exports/<model>.<ext> of the current directory,
    never beside the checkpoint (models/<model>/ is a DVC output: a new file there marks
    train@<model> changed, issue 29); --out is honoured anywhere, even there."""
    ckpt_dir = tmp_path / "models/cnn2d"
    ckpt_dir.mkdir(parents=True)
    ckpt = _checkpoint(ckpt_dir, "cnn2d", SMALL["cnn2d"])
    monkeypatch.chdir(tmp_path)
    cli_main(["export", "--checkpoint", str(ckpt), "--format", "torchscript"])
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["cnn2d.pt"]
    exported = tmp_path / "exports/cnn2d.ts.pt"
    assert exported.is_file() and json.loads(exported.with_name("cnn2d.ts.pt.json")
                                             .read_text())["model_name"] == "cnn2d"
    cli_main(["export", "--checkpoint", str(ckpt), "--format", "torchscript",
              "--out", str(ckpt_dir / "asked.ts.pt")])
    assert (ckpt_dir / "asked.ts.pt").is_file()
    wave = _checkpoint(tmp_path, "cnn1d", kind="waveform")
    with pytest.raises(SystemExit) as stop:
        cli_main(["export", "--checkpoint", str(wave), "--format", "torchscript"])
    assert stop.value.code == 2 and "features.kind=waveform" in caplog.text


def test_the_default_export_folder_is_git_ignored():
    root = Path(__file__).resolve().parents[2]
    ignored = subprocess.run(["git", "check-ignore", "-q", "exports/crnn.onnx"], cwd=root)
    assert ignored.returncode == 0, "exports/ (audiotag export's default) is not git-ignored"
