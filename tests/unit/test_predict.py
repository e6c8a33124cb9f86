"""``audiotag predict``: audio files scored exactly as evaluation scores the feature store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import write_tone_dataset

from audiotag.cli import main as cli_main
from audiotag.core.errors import AudioError
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import audio_paths, read_manifest
from audiotag.features.config import FeaturesConfig
from audiotag.features.store import FeatureSet, extract_features
from audiotag.models import create_model
from audiotag.predict import find_audio, run_predict, skipped_path
from audiotag.training.checkpoint import save_checkpoint
from audiotag.training.inference import predict_clips, predict_files, task_of

CFG = dict(sample_rate=8000, n_fft=256, hop_length=128, n_mels=16, fmin=50.0, fmax=4000.0,
           clip_seconds=0.6, workers=0)


def _store_and_checkpoint(tmp_path, **features):
    """A tone dataset, its feature store and an (untrained, seeded) cnn2d checkpoint."""
    raw = tmp_path / "raw"
    write_tone_dataset(raw)
    manifest, classes = read_manifest(raw)
    cfg = FeaturesConfig(**{**CFG, **features})
    extract_features(manifest, classes, raw, tmp_path / "features", cfg,
                     SplitConfig(valid_fold=0))
    store = FeatureSet(tmp_path / "features", ("train",))
    torch.manual_seed(0)
    model = create_model("cnn2d", num_classes=len(classes), n_mels=store.n_mels,
                         channels=[4, 8])
    meta = {"model_name": "cnn2d", "model_params": {"channels": [4, 8]},
            "num_classes": len(classes), "n_mels": store.n_mels, "task": "multilabel",
            "single_label": False, "classes": classes, "targets": [],
            "features": store.meta["config"], "stats": store.stats, "n_parameters": 1}
    save_checkpoint(tmp_path / "model.pt", model, meta)
    return model.eval(), meta, manifest, audio_paths(manifest, raw)


@pytest.mark.parametrize("features", [{}, {"eval_crops": "3"},
                                      {"eval_crops": 3, "eval_aggregate": "max"},
                                      {"kind": "logmel+mfcc", "n_mfcc": 8}])
def test_predict_files_reproduces_the_feature_store_scores(tmp_path, features):
    # long clips (up to 1.5 s against a 0.6 s window) are cropped, short ones padded: the
    # file path must make the very windows the store path makes
    model, meta, manifest, paths = _store_and_checkpoint(tmp_path, **features)
    spec = task_of(meta)
    stored = predict_clips(model, tmp_path / "features", ("test",), 4, torch.device("cpu"),
                           spec)
    test = manifest["subset"].to_numpy() == "test"
    files = predict_files(model, meta, [p for p, t in zip(paths, test, strict=True) if t], 4,
                          torch.device("cpu"), progress=False)
    assert [p.rsplit("/", 1)[1] for p in files.paths] == [f"{c}.wav" for c in stored.clip_ids]
    assert files.outputs == stored.classes and not files.skipped
    np.testing.assert_allclose(files.scores, stored.scores, atol=1e-5)


def test_predict_cli_writes_scores_tags_and_lists_unreadable_files(tmp_path, caplog):
    _, meta, manifest, paths = _store_and_checkpoint(tmp_path)
    clips = tmp_path / "clips" / "deeper"
    clips.mkdir(parents=True)
    for p in paths[:3]:
        (clips / p.name).write_bytes(p.read_bytes())
    (clips / "broken.wav").write_text("not audio")  # an audio suffix but unreadable
    (clips / "notes.txt").write_text("ignored: not an audio suffix")
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    out = tmp_path / "preds.csv"
    cli_main(["predict", "--checkpoint", str(tmp_path / "model.pt"), "--out", str(out),
              "--top-k", "2", "--device", "cpu", "--no-progress", str(tmp_path / "clips"),
              str(empty)])
    table = pd.read_csv(out, keep_default_na=False)
    assert table.columns.tolist() == ["path", "tags", *meta["classes"]]
    assert sorted(table["path"]) == sorted(str(clips / p.name) for p in paths[:3])
    scores = table[meta["classes"]].to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    for row, tags in zip(scores, table["tags"], strict=True):  # best two, best first
        assert tags.split(";") == [meta["classes"][i] for i in np.argsort(-row)[:2]]
    skipped = pd.read_csv(skipped_path(out))
    assert sorted(skipped["path"]) == sorted([str(clips / "broken.wav"), str(empty)])
    assert skipped["reason"].str.contains("cannot read audio|no samples").all()
    assert "broken.wav" in caplog.text and "2 of 5 file(s) unreadable" in caplog.text
    # a second run without unreadable files removes the stale list
    again = run_predict(tmp_path / "model.pt", [clips / paths[0].name, clips / paths[1].name],
                        out, device="cpu", workers=1, progress=False)  # decoding in a worker
    assert not skipped_path(out).exists() and len(pd.read_csv(out)) == 2
    np.testing.assert_allclose(again.scores, scores[:2], atol=1e-5)
    with pytest.raises(AudioError, match="none of the 2 file"):  # nothing readable: an error
        run_predict(tmp_path / "model.pt", [clips / "broken.wav", empty], out, device="cpu")


def test_predict_errors_name_the_problem(tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="nope.wav: no such file"):
        find_audio([tmp_path / "nope.wav"])
    (tmp_path / "d").mkdir()
    with pytest.raises(SystemExit) as stop:
        cli_main(["predict", "--checkpoint", "m.pt", "--out", "x.csv", str(tmp_path / "d")])
    assert stop.value.code == 2
    with pytest.raises(ValueError, match="--top-k must be >= 0"):
        run_predict("m.pt", [tmp_path], tmp_path / "x.csv", top_k=-1)
    (tmp_path / "d" / "a.wav").write_bytes(b"")
    if not torch.cuda.is_available():  # a missing device: one line and status 2
        with pytest.raises(SystemExit) as stop:
            cli_main(["predict", "--checkpoint", "m.pt", "--out", "x.csv", "--device", "cuda",
                      str(tmp_path / "d")])
        assert stop.value.code == 2
        assert "--device is 'cuda' but no CUDA device" in caplog.text


def test_cli_passes_every_tune_option_to_tune(capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main(["tune", "--help"])
    assert stop.value.code == 0 and "--trials" in capsys.readouterr().out
