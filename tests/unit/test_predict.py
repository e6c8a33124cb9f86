"""``audiotag predict``: audio files scored exactly as evaluation scores the feature store."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from helpers import tone_clip, write_tone_dataset

from audiotag import windows
from audiotag.cli import main as cli_main
from audiotag.contracts.checkpoint import CheckpointMeta
from audiotag.core.errors import AudioError, ParamsError
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import audio_paths, read_manifest
from audiotag.features import audio
from audiotag.features.config import FeaturesConfig
from audiotag.features.frames import eval_starts
from audiotag.features.store import FeatureSet, collate_clips, extract_features
from audiotag.models import create_model
from audiotag.predict import find_audio, run_predict, skipped_path
from audiotag.training.checkpoint import save_checkpoint, save_torch
from audiotag.training.inference import clip_losses, predict_clips, task_of
from audiotag.windows import covers, file_starts, long_file_windows, predict_windows

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
    model = create_model("cnn2d", num_classes=len(classes), n_mels=store.dim,
                         channels=[4, 8])
    meta = CheckpointMeta(model_name="cnn2d", model_params={"channels": [4, 8]},
                          num_classes=len(classes), n_mels=store.dim, classes=classes,
                          features=store.meta["config"], stats=store.stats, n_parameters=1)
    save_checkpoint(tmp_path / "model.pt", model, meta)
    return model.eval(), meta, manifest, audio_paths(manifest, raw)


@pytest.mark.parametrize("features", [{}, {"eval_crops": "3"},
                                      {"eval_crops": 3, "eval_aggregate": "max"},
                                      {"kind": "logmel+mfcc", "n_mfcc": 8},
                                      # the experiment options: the checkpoint's stats and
                                      # config carry the projection and the mirror mode
                                      {"pca": 6}, {"mirror": "wave"},
                                      {"mirror": "spectrogram", "eval_crops": 3},
                                      {"kind": "logmel+mfcc", "n_mfcc": 8,
                                       "normalize_parts": ["standard", "none"],
                                       "normalize_by": "part"}])
def test_predict_windows_reproduces_the_feature_store_scores(tmp_path, features):
    # long clips (up to 1.5 s against a 0.6 s window) are cropped, short ones padded: the
    # file path must make the very windows the store path makes (these clips are no longer
    # than the evaluation windows cover, so `audiotag predict` takes those windows)
    model, meta, manifest, paths = _store_and_checkpoint(tmp_path, **features)
    spec = task_of(meta)
    stored = predict_clips(model, tmp_path / "features", ("test",), 4, torch.device("cpu"),
                           spec)
    test = manifest["subset"].to_numpy() == "test"
    files = predict_windows(model, meta, [p for p, t in zip(paths, test, strict=True) if t],
                            None, 0.1, 4, torch.device("cpu"), progress=False)
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
    assert table.columns.tolist() == ["path", "tags", *meta.classes]
    assert sorted(table["path"]) == sorted(str(clips / p.name) for p in paths[:3])
    scores = table[meta.classes].to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    for row, tags in zip(scores, table["tags"], strict=True):  # best two, best first
        assert tags.split(";") == [meta.classes[i] for i in np.argsort(-row)[:2]]
    skipped = pd.read_csv(skipped_path(out))
    assert sorted(skipped["path"]) == sorted([str(clips / "broken.wav"), str(empty)])
    assert skipped["reason"].str.startswith("unreadable").all()  # the download's screening
    assert "broken.wav" in caplog.text and "2 of 5 file(s) not scored" in caplog.text
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


def _tones(path, parts, sr=8000):
    """A WAV of the tone clips' tones: ``parts`` is ``[(class, seconds), ...]`` in order."""
    rng = np.random.default_rng(1)
    wave = np.concatenate([tone_clip([name], s, sr, rng) for name, s in parts])
    sf.write(path, wave.astype(np.float32), sr, subtype="PCM_16")
    return path


def _trained_checkpoint(tmp_path):
    """:func:`_store_and_checkpoint` with the model trained a few full-batch steps (the
    tones are easy), saved over the untrained one."""
    model, meta, _, _ = _store_and_checkpoint(tmp_path)
    data = FeatureSet(tmp_path / "features", ("train",))
    batch = collate_clips([data[i] for i in range(len(data))])
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(60):
        optimiser.zero_grad()
        loss = clip_losses(model, batch.x, batch.y, lambda z, y: torch.nn.functional
                           .binary_cross_entropy_with_logits(z, y, reduction="none")
                           .mean(1)).mean()  # (clips, crops, classes): every crop trains
        loss.backward()
        optimiser.step()
    save_checkpoint(tmp_path / "model.pt", model.eval(), meta)


def test_a_long_file_is_scored_everywhere_and_the_timeline_finds_its_middle(tmp_path,
                                                                           monkeypatch):
    # before: two 0.6 s windows (start and end) of a 60 s file, the middle never scored
    _trained_checkpoint(tmp_path)
    low, high = "low", "high"
    files = [_tones(tmp_path / "lhl.wav", [(low, 5), (high, 50), (low, 5)]),
             _tones(tmp_path / "low.wav", [(low, 60)]), _tones(tmp_path / "high.wav", [(high, 60)])]
    out, timeline = tmp_path / "preds.csv", tmp_path / "timeline.csv"
    cli_main(["predict", "--checkpoint", str(tmp_path / "model.pt"), "--out", str(out),
              "--timeline", str(timeline), "--device", "cpu", "--no-progress",
              *map(str, files)])
    classes = ["low", "mid", "high"]
    scores = pd.read_csv(out).set_index("path").loc[list(map(str, files)), classes].to_numpy()
    assert np.abs(scores[0] - scores[1]).max() > 1e-3  # the middle counts
    windows = pd.read_csv(timeline)
    assert windows.columns.tolist() == ["path", "start_s", "end_s", *classes]
    mine = windows[windows["path"] == str(files[0])]
    assert mine["start_s"].min() == 0 and mine["end_s"].max() == pytest.approx(60, abs=0.05)
    assert np.diff(mine["start_s"]).max() == pytest.approx(0.3, abs=0.02)  # half a window
    assert scores[0][2] > scores[1][2] + 0.3  # the high tone, only in the middle, is found
    # the timeline puts it in the middle: high tops the windows inside it, low those outside
    for row in mine.itertuples():
        best = classes[int(np.argmax([row.low, row.mid, row.high]))]
        if 5 <= row.start_s and row.end_s <= 55:
            assert best == "high", row
        elif row.end_s <= 5 or row.start_s >= 55:
            assert best == "low", row
    # read in 7 s pieces (as a file over BLOCK_SECONDS is): the same tags, scores, timeline
    monkeypatch.setattr(audio, "BLOCK_SECONDS", 7.0)
    cli_main(["predict", "--checkpoint", str(tmp_path / "model.pt"), "--out",
              str(tmp_path / "p2.csv"), "--timeline", str(tmp_path / "t2.csv"), "--device",
              "cpu", "--no-progress", *map(str, files)])
    assert (tmp_path / "p2.csv").read_text() == out.read_text()
    assert (tmp_path / "t2.csv").read_text() == timeline.read_text()


def test_windows_cover_a_file_and_keep_the_evaluation_windows_when_they_do():
    assert file_starts(8, 4, 2, 2) == eval_starts(8, 4, 2) == [0, 4]  # 2 windows cover 8
    assert file_starts(10, 4, 2, 2) == [0, 2, 4, 6]  # 10 frames: the sliding windows
    assert file_starts(11, 4, 1, 3) == [0, 3, 6, 7]  # the last window ends at the last frame
    assert covers([0, 3, 6, 7], 4, 11) and not covers([0, 6], 4, 11)


def test_tags_use_the_threshold_evaluate_tuned(tmp_path, caplog):
    caplog.set_level(logging.INFO, "audiotag")
    _store_and_checkpoint(tmp_path / "models" / "m")  # models/m/model.pt in a project
    ckpt = tmp_path / "models" / "m" / "model.pt"
    clips = sorted((tmp_path / "models" / "m" / "raw" / "audio").glob("test_*.wav"))[:4]
    out = tmp_path / "preds.csv"

    def tags(*options):
        pred = run_predict(ckpt, clips, out, device="cpu", progress=False, **dict(options))
        table = pd.read_csv(out, keep_default_na=False)
        return pred.scores, table["tags"].str.split(";").tolist()

    scores, tagged = tags()  # no evaluation yet: the conventional 0.5, with a warning
    assert "conventional threshold 0.5" in caplog.text
    details = tmp_path / "metrics" / "details" / "m.json"
    details.parent.mkdir(parents=True)
    cut = float(np.median(scores))
    details.write_text(json.dumps({"threshold": cut}))
    scores, tagged = tags()
    names = np.array(["low", "mid", "high"])
    for row, t in zip(scores, tagged, strict=True):
        best_first = [n for n in names[np.argsort(-row, kind="stable")] if row[
            list(names).index(n)] >= cut]
        assert [x for x in t if x] == best_first
    assert f"threshold {cut:g}, tuned by evaluate" in caplog.text
    _, tagged = tags(("threshold", 0.0))  # --threshold overrides: every class
    assert all(len(t) == 3 for t in tagged)
    _, tagged = tags(("top_k", 1))  # --top-k tags the k best
    assert all(len(t) == 1 for t in tagged)
    os.utime(details, (0, 0))  # older than the checkpoint: another model's evaluation
    caplog.clear()
    tags()
    assert "is older than" in caplog.text
    with pytest.raises(ParamsError, match="not both"):
        run_predict(ckpt, clips, out, top_k=1, threshold=0.5)


def test_files_the_download_would_exclude_are_listed_not_scored(tmp_path):
    _, _, _, paths = _store_and_checkpoint(tmp_path)
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "silent.wav", np.zeros(8000, np.float32), 8000)
    sf.write(clips / "tiny.wav", _tone_samples(10), 8000)  # 10 samples
    sf.write(clips / "nan.wav", np.r_[_tone_samples(8000), np.nan].astype(np.float32), 8000,
             subtype="FLOAT")
    (clips / "good.wav").write_bytes(paths[0].read_bytes())
    out = tmp_path / "preds.csv"
    run_predict(tmp_path / "model.pt", [clips], out, device="cpu", progress=False)
    assert pd.read_csv(out)["path"].tolist() == [str(clips / "good.wav")]
    reasons = pd.read_csv(skipped_path(out)).set_index("path")["reason"]
    assert reasons[str(clips / "silent.wav")] == "all-silent"
    assert reasons[str(clips / "tiny.wav")].startswith("too short: 0.00125 s")
    assert reasons[str(clips / "nan.wav")].startswith("non-finite")
    run_predict(tmp_path / "model.pt", [clips / "tiny.wav"], out, device="cpu", progress=False,
                min_seconds=0.001)  # --min-seconds lowers the bar
    assert len(pd.read_csv(out)) == 1


def _tone_samples(n: int) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 300 * np.arange(n) / 8000)).astype(np.float32)


def _bad_checkpoints(tmp_path):
    """(name, file, what the message must say) of every broken checkpoint case."""
    _, meta, _, paths = _store_and_checkpoint(tmp_path)
    good = (tmp_path / "model.pt").read_bytes()
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    cases = {"empty": (b"", "empty file"), "truncated": (good[:len(good) // 2], "truncated"),
             "text": (b"hello, not torch", "not a readable torch checkpoint"),
             "wav": (paths[0].read_bytes(), "WAV")}
    for name, (data, _) in cases.items():
        (tmp_path / f"{name}.pt").write_bytes(data)
    save_torch({**state, "classes": [*meta.classes, "extra"]}, tmp_path / "classes.pt")
    save_torch({**state, "num_classes": 5, "classes": [*meta.classes, "a", "b"]},
               tmp_path / "weights.pt")
    return [(tmp_path / f"{n}.pt", why) for n, (_, why) in cases.items()] + [
        (tmp_path / "classes.pt", "lists 4 classes/targets but its model has 3 outputs"),
        (tmp_path / "weights.pt", "weights do not fit")]


@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_bad_checkpoint_is_one_line_and_status_2(tmp_path, caplog, command, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, _tone_samples(8000), 8000)
    for path, why in _bad_checkpoints(tmp_path):
        caplog.clear()
        args = (["--out", str(tmp_path / "x.csv"), "--device", "cpu", str(wav)]
                if command == "predict" else ["--format", "torchscript",
                                              "--out", str(tmp_path / "x.ts.pt")])
        with pytest.raises(SystemExit) as stop:
            cli_main([command, "--checkpoint", str(path), *args])
        assert stop.value.code == 2, path
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "\n" not in errors[0], errors
        assert str(path) in errors[0] and why in errors[0], errors[0]
        assert "Traceback" not in capsys.readouterr().err


def test_a_file_longer_than_a_block_is_scored_in_pieces_as_if_whole(tmp_path, monkeypatch):
    model, meta, _, _ = _store_and_checkpoint(tmp_path)
    path = str(_tones(tmp_path / "long.wav", [("low", 20), ("high", 25), ("mid", 15)]))
    whole = predict_windows(model, meta, [path], 0.25, 0.1, 8, torch.device("cpu"),
                            progress=False)
    monkeypatch.setattr(audio, "BLOCK_SECONDS", 7.0)  # 60 s: nine pieces
    cut = []
    monkeypatch.setattr(windows, "long_file_windows",
                        lambda *a: cut.append(a[0]) or long_file_windows(*a))
    pieces = predict_windows(model, meta, [path], 0.25, 0.1, 8, torch.device("cpu"),
                             progress=False)
    assert cut == [path]  # the piece-by-piece path was taken
    assert len(pieces.timeline) == len(whole.timeline) > 200
    pd.testing.assert_frame_equal(pieces.timeline, whole.timeline, check_exact=True)
    assert np.array_equal(pieces.scores, whole.scores)
