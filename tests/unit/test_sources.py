"""Every dataset source, on small archives laid out like upstream's, served over loopback."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from fileserver import serve

from audiotag.core.errors import DataSourceError, ParamsError
from audiotag.data import fetch, fma, fsdkaggle2019, gtzan, gtzan_split
from audiotag.data.manifest import read_manifest, validate_manifest
from audiotag.data.screen import BAD_CLIPS_NAME
from audiotag.data.sources import SOURCES, build_dataset, parse_data, parse_data_checks

FSDD_REAL = (Path(__file__).resolve().parents[3] / "shared" / "datasets" / "fsdd"
             / "free-spoken-digit-dataset-1.0.10.tar.gz")
FSDD_SHA256 = "51a34ef73498a32ce8c476da5fde645d0cd9ffdb189f69a10b464178588d0223"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv(fetch.CACHE_ENV, str(path))
    monkeypatch.setattr(fetch, "RETRIES", 0)  # no 1-2-3 s back-off in tests
    return path


def _tone(path: Path, sr: int = 8000, seconds: float = 0.25, freq: float = 440.0,
          fmt: str | None = None, silent: bool = False, noise: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    rng = np.random.default_rng(int(freq))
    wave = rng.uniform(-0.5, 0.5, len(t)) if noise else 0.3 * np.sin(2 * np.pi * freq * t)
    sf.write(path, 0 * wave if silent else wave, sr, format=fmt)
    return path


def _zip_dir(root: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(root.rglob("*")):
            zf.write(p, p.relative_to(root.parent).as_posix())
    return out


def _digest(path: Path, alg: str) -> str:
    return f"{alg}:" + hashlib.new(alg, path.read_bytes()).hexdigest()


def _build(name: str, settings: dict, out: Path, max_bad: float = 0.0, seed: int = 0,
           **checks):
    raw = {"data": {"dataset": name, name: settings, "max_bad_fraction": max_bad, **checks}}
    source, cfg = parse_data(raw)
    out.mkdir(parents=True, exist_ok=True)
    df, classes = build_dataset(source, cfg, out, seed, parse_data_checks(raw))
    validate_manifest(df, classes)
    return df, classes


def test_every_source_is_registered():
    assert set(SOURCES.names()) >= {"synthetic", "fsdkaggle2019", "fsdd", "esc50", "gtzan",
                                    "fma", "folder"}


# ------------------------------------------------------------------------------- FSDD


@pytest.mark.skipif(not FSDD_REAL.is_file(), reason="shared FSDD archive not present")
def test_fsdd_real_archive_end_to_end(tmp_path, cache):
    """The real FSDD v1.0.10 archive over loopback through the download stage script."""
    repo = Path(__file__).resolve().parents[2]
    with serve() as srv:
        url = srv.add(FSDD_REAL)
        params = {"seed": 0, "data": {"dataset": "fsdd",
                                      "fsdd": {"url": url, "sha256": FSDD_SHA256}}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        env = {"AUDIO_DATA_CACHE": str(cache), "PATH": "/usr/bin:/bin"}
        run = subprocess.run([sys.executable, str(repo / "stages" / "download.py"),
                              "--out", "data/raw"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    df, classes = read_manifest(tmp_path / "data" / "raw")
    assert classes == [str(d) for d in range(10)]
    assert len(df) == 3000 and df["subset"].value_counts().to_dict() == {"curated": 2700,
                                                                        "test": 300}
    take = df["clip_id"].str.rsplit("_", n=1).str[1].astype(int)
    assert (take[df["subset"] == "test"] < 5).all() and (take[df["subset"] != "test"] >= 5).all()
    assert sorted(df["speaker"].unique()) == ["george", "jackson", "lucas", "nicolas", "theo",
                                              "yweweler"]
    assert set(df["sample_rate"]) == {8000} and (df["duration_s"] > 0).all()
    assert (df["labels"] == df["clip_id"].str[0]).all()
    assert sorted(df.loc[df["subset"] == "curated", "fold"].unique()) == [0, 1, 2, 3, 4]
    assert not list((tmp_path / "data" / "raw").rglob("*.py"))  # utilities not extracted
    assert (cache / "fsdd" / FSDD_REAL.name).is_file()  # verified copy kept in the cache


def _fsdd_archive(tmp_path: Path) -> Path:
    top = tmp_path / "build" / "free-spoken-digit-dataset-1.0.10"
    for digit in (0, 1):
        for take in (0, 7):
            _tone(top / "recordings" / f"{digit}_theo_{take}.wav", freq=300 + 100 * digit)
    (top / "utils.py").write_text("print('not data')\n")
    out = tmp_path / "srv" / "v1.0.10.tar.gz"
    out.parent.mkdir(parents=True)
    with tarfile.open(out, "w:gz") as tf:
        tf.add(top, arcname=top.name)
    return out


def test_checksum_mismatch_stops_the_stage_without_output(tmp_path, monkeypatch, caplog):
    archive = _fsdd_archive(tmp_path)
    repo = Path(__file__).resolve().parents[2]
    with serve() as srv:
        params = {"data": {"dataset": "fsdd", "fsdd": {"url": srv.add(archive),
                                                       "sha256": "a" * 64}}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["download.py", "--out", "data/raw"])
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(repo / "stages" / "download.py"), run_name="__main__")
    assert exit_info.value.code == 2
    assert "checksum verification failed" in caplog.text and "v1.0.10.tar.gz" in caplog.text
    assert not (tmp_path / "data" / "raw").exists()
    assert not [p for p in (tmp_path / "data").iterdir()]  # no partial directory either


def test_fsdd_from_a_local_extracted_copy(tmp_path):
    archive = _fsdd_archive(tmp_path)
    mine = tmp_path / "mine"
    with tarfile.open(archive) as tf:
        tf.extractall(mine, filter="data")
    df, _ = _build("fsdd", {"local_dir": str(mine)}, tmp_path / "out")
    assert sorted(df["clip_id"]) == ["0_theo_0", "0_theo_7", "1_theo_0", "1_theo_7"]
    assert df.set_index("clip_id").loc["1_theo_7", "fold"] == 7 % 5


# ----------------------------------------------------------------------------- ESC-50


def _esc50_archive(tmp_path: Path) -> Path:
    top = tmp_path / "build" / "ESC-50-master"
    rows = []
    for fold in range(1, 6):
        for target, category in enumerate(["dog", "rooster", "pig"]):
            src = 1000 * fold + target  # one source recording per fold and class
            for take in "AB":
                name = f"{fold}-{src}-{take}-{target}.wav"
                _tone(top / "audio" / name, sr=44100, seconds=0.1, freq=200 + 300 * target)
                rows.append({"filename": name, "fold": fold, "target": target,
                             "category": category, "esc10": category == "dog",
                             "src_file": src, "take": take})
    (top / "meta").mkdir()
    pd.DataFrame(rows).to_csv(top / "meta" / "esc50.csv", index=False)
    (top / "README.md").write_text("ESC-50\n")
    out = tmp_path / "srv" / "master.zip"
    out.parent.mkdir(parents=True)
    return _zip_dir(top, out)


def test_esc50_folds_never_leak(tmp_path):
    archive = _esc50_archive(tmp_path)
    with serve() as srv:
        url = srv.add(archive, "karolpiczak/ESC-50/archive/refs/heads/master.zip")
        df, classes = _build("esc50", {"url": url, "test_fold": 3}, tmp_path / "out")
    assert classes == ["dog", "rooster", "pig"]  # upstream's target order
    test = df[df["subset"] == "test"]
    train = df[df["subset"] != "test"]
    assert len(test) == 6 and (test["source_fold"] == 3).all() and (test["fold"] == -1).all()
    assert set(train["source_fold"]) == {1, 2, 4, 5}
    assert train.groupby("source_fold")["fold"].nunique().eq(1).all()  # a fold stays whole
    assert sorted(train["fold"].unique()) == [0, 1, 2, 3]
    assert not set(test["source_id"]) & set(train["source_id"])
    assert set(df["sample_rate"]) == {44100}


def test_esc50_from_local_archive_and_bad_fold(tmp_path):
    archive = _esc50_archive(tmp_path)
    (tmp_path / "srv" / "master.zip").rename(tmp_path / "srv" / "ESC-50-master.zip")
    df, _ = _build("esc50", {"local_dir": str(archive.parent), "test_fold": 5,
                             "url": "http://127.0.0.1:9/none.zip"}, tmp_path / "out")
    assert len(df) == 30
    with pytest.raises(Exception, match=r"data\.esc50\.test_fold"):
        parse_data({"data": {"dataset": "esc50", "esc50": {"test_fold": 6}}})


# ------------------------------------------------------------------------------ GTZAN


def test_gtzan_filtered_split_lists():
    sizes = [sum(map(len, part.values())) for part in (gtzan_split.TRAIN, gtzan_split.VALID,
                                                        gtzan_split.TEST)]
    assert sizes == [443, 197, 290]
    ids = [(g, n) for part in (gtzan_split.TRAIN, gtzan_split.VALID, gtzan_split.TEST)
           for g, nums in part.items() for n in nums]
    assert len(set(ids)) == len(ids)  # no clip in two parts
    assert 54 in gtzan_split.TRAIN["jazz"]


def test_gtzan_reports_the_unreadable_clip(tmp_path, monkeypatch, caplog):
    split = {"train": {"jazz": (53, 54), "rock": (1,)}, "valid": {"jazz": (2,), "rock": (2,)},
             "test": {"jazz": (3,), "rock": (3,)}}
    monkeypatch.setattr(gtzan, "_PARTS", (("curated", 1, split["train"]),
                                          ("curated", 0, split["valid"]),
                                          ("test", -1, split["test"])))
    top = tmp_path / "build" / "genres"
    for part in split.values():
        for genre, nums in part.items():
            for n in nums:
                path = top / genre / f"{genre}.{n:05d}.au"
                if (genre, n) == ("jazz", 54):  # as upstream: a file no decoder reads
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b".snd" + bytes(60))
                else:
                    _tone(path, sr=22050, seconds=0.1, fmt="AU")
    archive = tmp_path / "srv" / "genres.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(top, arcname="genres")
    monkeypatch.setattr(gtzan, "SHA256", _digest(archive, "sha256"))
    with serve() as srv, caplog.at_level(logging.WARNING):
        df, classes = _build("gtzan", {"url": srv.add(archive)}, tmp_path / "out",
                             max_bad=0.2)
    assert "jazz.00054" not in set(df["clip_id"]) and len(df) == 6
    bad = pd.read_csv(tmp_path / "out" / BAD_CLIPS_NAME)
    assert bad["clip_id"].tolist() == ["jazz.00054"]
    assert "jazz.00054" in caplog.text
    assert classes == list(gtzan.GENRES)
    assert df.set_index("clip_id").loc["jazz.00002", "fold"] == 0  # official validation
    with serve() as srv, pytest.raises(DataSourceError, match=r"1 of 7 clips.*jazz\.00054"):
        _build("gtzan", {"url": srv.add(archive)}, tmp_path / "out2", max_bad=0.1)


# -------------------------------------------------------------------------------- FMA


def _fma_archives(tmp_path: Path) -> tuple[Path, Path]:
    ids = [2, 5, 10, 140, 3]
    tracks = pd.DataFrame({
        ("album", "title"): ["a", "b", "c", "d", "e"],
        ("set", "split"): ["training", "validation", "test", "training", "training"],
        ("set", "subset"): ["small", "small", "small", "small", "medium"],
        ("track", "genre_top"): ["Hip-Hop", "Pop", "Hip-Hop", "Folk", "Rock"],
        ("track", "title"): ["t1", "t2", "t3", "t4", "t5"],
    }, index=pd.Index(ids, name="track_id"))
    echonest = pd.DataFrame({
        ("echonest", "audio_features", "danceability"): [0.5, 0.1],
        ("echonest", "audio_features", "energy"): [0.6, 0.2],
        ("echonest", "audio_features", "valence"): [0.7, 0.3],
        ("echonest", "metadata", "artist_name"): ["x", "y"],
    }, index=pd.Index([2, 10], name="track_id"))
    meta = tmp_path / "build" / "fma_metadata"
    meta.mkdir(parents=True)
    tracks.to_csv(meta / "tracks.csv")  # pandas writes the same multi-row header as upstream
    echonest.to_csv(meta / "echonest.csv")
    audio = tmp_path / "build" / "fma_small"
    for tid in (2, 5, 10):  # 140 has no audio file
        _tone(audio / f"{tid:06d}"[:3] / f"{tid:06d}.mp3", sr=22050, seconds=0.3, fmt="MP3")
    (audio / "README.txt").write_text("fma_small\n")
    srv_dir = tmp_path / "srv"
    srv_dir.mkdir()
    return _zip_dir(meta, srv_dir / "fma_metadata.zip"), _zip_dir(audio, srv_dir / "fma_small.zip")


def test_fma_genres_targets_and_missing_audio(tmp_path, monkeypatch, caplog):
    meta, audio = _fma_archives(tmp_path)
    monkeypatch.setattr(fma, "SHA1", {**fma.SHA1, "fma_metadata.zip": _digest(meta, "sha1"),
                                      "fma_small.zip": _digest(audio, "sha1")})
    with serve() as srv, caplog.at_level(logging.WARNING):
        srv.add(meta, "fma/fma_metadata.zip")
        srv.add(audio, "fma/fma_small.zip")
        df, classes = _build("fma", {"base_url": srv.url("fma")}, tmp_path / "out")
    df = df.set_index("clip_id")
    assert sorted(df.index) == ["000002", "000005", "000010"]  # medium track 3 left out
    assert "1 track(s) of fma_small have no audio file" in caplog.text and "140" in caplog.text
    assert classes == ["Hip-Hop", "Pop"]
    assert df.loc["000002", "targets_valence"] == pytest.approx(0.7)
    assert df.loc["000010", "targets_danceability"] == pytest.approx(0.1)
    assert np.isnan(df.loc["000005", "targets_energy"])
    assert df["subset"].to_dict() == {"000002": "curated", "000005": "curated",
                                      "000010": "test"}
    assert df.loc["000005", "fold"] == 0 and df.loc["000002", "fold"] == 1
    assert (df["sample_rate"] == 22050).all()


def test_fma_corrupt_metadata_archive_is_refused(tmp_path, monkeypatch):
    meta, audio = _fma_archives(tmp_path)
    with serve() as srv:
        srv.add(meta, "fma/fma_metadata.zip")
        with pytest.raises(DataSourceError, match=r"fma_metadata\.zip.*checksum"):
            _build("fma", {"base_url": srv.url("fma")}, tmp_path / "out")  # real sha1 sums


# ----------------------------------------------------------------------------- folder


def _folder(tmp_path: Path, rows: list[str]) -> tuple[Path, Path]:
    audio = tmp_path / "mine"
    for name in ("a.wav", "b.wav", "sub/c.flac", "d.wav"):
        _tone(audio / name, fmt="FLAC" if name.endswith("flac") else None)
    csv = tmp_path / "labels.csv"
    csv.write_text("\n".join(rows) + "\n")
    return audio, csv


def test_folder_source_parses_quoted_comma_labels(tmp_path):
    audio, csv = _folder(tmp_path, ["fname,labels,subset", 'a.wav,"Bark,Growling",curated',
                                    "b.wav,Purr,noisy", 'sub/c.flac,"Purr,Bark",test',
                                    "d.wav,Bark,train"])
    df, classes = _build("folder", {"audio_dir": str(audio), "csv": str(csv)},
                         tmp_path / "out")
    df = df.set_index("clip_id")
    assert classes == ["Bark", "Growling", "Purr"]
    assert df.loc["a", "labels"] == "Bark;Growling" and df.loc["sub/c", "labels"] == "Purr;Bark"
    assert df["subset"].to_dict() == {"a": "curated", "b": "noisy", "sub/c": "test",
                                      "d": "curated"}
    assert (tmp_path / "out" / df.loc["sub/c", "path"]).is_file()


def test_folder_source_without_subset_splits_by_seed(tmp_path):
    audio, csv = _folder(tmp_path, ["fname,labels", "a.wav,x", "b.wav,y", "d.wav,x",
                                    "sub/c.flac,y"])
    cfg = {"audio_dir": str(audio), "csv": str(csv), "test_fraction": 0.25}
    df, _ = _build("folder", cfg, tmp_path / "out")
    again, _ = _build("folder", cfg, tmp_path / "out2")
    assert (df["subset"] == "test").sum() == 1 and df.equals(again)
    assert (df.loc[df["subset"] == "test", "fold"] == -1).all()


@pytest.mark.parametrize(("row", "message"), [
    ("missing.wav,Bark", r"line 3 \(fname='missing\.wav'\): no such file"),
    ("b.wav,Bark,valid", r"line 3 \(fname='b\.wav'\): subset 'valid'"),
    ("../etc/passwd,Bark", r"line 3 .*relative to audio_dir"),
    ("a.wav,Purr", r"line 3 \(fname='a\.wav'\): same file as line 2"),
    (",Bark", r"line 3 .*empty fname"),
])
def test_folder_source_errors_name_the_csv_row(tmp_path, row, message):
    audio, csv = _folder(tmp_path, ["fname,labels,subset", "a.wav,Bark,curated",
                                    row if row.count(",") == 2 else row + ",curated"])
    with pytest.raises(DataSourceError, match=rf"labels\.csv: {message}"):
        _build("folder", {"audio_dir": str(audio), "csv": str(csv)}, tmp_path / "out")


@pytest.mark.parametrize(("rows", "message"), [
    (["a.wav,Bark,curated", "b.wav,,noisy"],
     r"line 3 \(fname='b\.wav'\): no labels, but its subset 'noisy' is a labelled one"),
    (["a.wav,Bark,curated", "b.wav,Bark,test", 'd.wav," , ",test'],
     r"line 4 \(fname='d\.wav'\): no labels, but other test clips have labels"),
])
def test_unlabelled_clip_in_a_labelled_subset_names_the_row(tmp_path, rows, message, caplog):
    audio, csv = _folder(tmp_path, ["fname,labels,subset", *rows])
    settings = {"audio_dir": str(audio), "csv": str(csv)}
    with pytest.raises(DataSourceError, match=rf"labels\.csv: {message} \(1 such clip"):
        _build("folder", settings, tmp_path / "out")
    with caplog.at_level(logging.WARNING):  # unless the user says so
        df, _ = _build("folder", settings, tmp_path / "out2", allow_unlabelled=True)
    assert len(df) == len(rows) and "origin" not in df.columns
    assert "allow_unlabelled" in caplog.text


def test_data_checks_params():
    checks = parse_data_checks({"data": {"dataset": "synthetic"}})
    assert (checks.max_bad_fraction, checks.min_seconds, checks.allow_unlabelled) == (
        0.01, 0.1, False)
    raw = {"data": {"min_seconds": 0.5, "allow_unlabelled": True}}
    parse_data(raw)  # settings, not source names
    assert parse_data_checks(raw).min_seconds == 0.5
    for key, value in (("min_seconds", -1), ("max_bad_fraction", 2), ("min_seconds", True)):
        with pytest.raises(ParamsError, match=rf"params\.yaml: data\.{key}: "):
            parse_data_checks({"data": {key: value}})


def test_folder_true_labels_column_becomes_the_manifests(tmp_path):
    # issue 31: the known clean labels of noisy clips, to score label cleaning; empty: the
    # clip holds no sound of the classes
    audio, csv = _folder(tmp_path, ["fname,labels,subset,true_labels",
                                    "a.wav,Bark,curated,Bark", 'b.wav,"Purr,Bark",noisy,Purr',
                                    "d.wav,Purr,noisy,",
                                    'sub/c.flac,"Purr,Bark",test,"Bark, Purr"'])
    df, classes = _build("folder", {"audio_dir": str(audio), "csv": str(csv)}, tmp_path / "out")
    assert classes == ["Bark", "Purr"]
    assert df.set_index("clip_id")["true_labels"].to_dict() == {
        "a": "Bark", "b": "Purr", "d": "", "sub/c": "Bark;Purr"}
    assert df.set_index("clip_id").loc["b", "labels"] == "Purr;Bark"
    _, plain = _folder(tmp_path, ["fname,labels", "a.wav,Bark", "b.wav,Purr"])
    without, _ = _build("folder", {"audio_dir": str(audio), "csv": str(plain)}, tmp_path / "o2")
    assert "true_labels" not in without.columns


@pytest.mark.parametrize(("classes", "message"), [
    (None, r"line 3 \(fname='b\.wav'\): true_labels: 'Growl' is the label of no clip"),
    (["Bark", "Purr"], r"line 3 \(fname='b\.wav'\): true_labels: label 'Growl' is not in "
                       r"data\.folder\.classes"),
])
def test_folder_bad_class_in_true_labels_names_the_line(tmp_path, classes, message):
    audio, csv = _folder(tmp_path, ["fname,labels,subset,true_labels", "a.wav,Bark,curated,Bark",
                                    'b.wav,Purr,noisy,"Purr,Growl"', "d.wav,Purr,test,Purr"])
    with pytest.raises(DataSourceError, match=rf"labels\.csv: {message}"):
        _build("folder", {"audio_dir": str(audio), "csv": str(csv), "classes": classes},
               tmp_path / "out")


def test_folder_class_list_makes_unknown_labels_errors(tmp_path):
    audio, csv = _folder(tmp_path, ["fname,labels,subset", "a.wav,low,curated",
                                    "b.wav,high,curated", 'd.wav,"high,Low",test'])
    settings = {"audio_dir": str(audio), "csv": str(csv), "classes": ["low", "high", "mid"]}
    with pytest.raises(DataSourceError,
                       match=r"labels\.csv: line 4 \(fname='d\.wav'\): label 'Low' is not in "
                             r"data\.folder\.classes"):
        _build("folder", settings, tmp_path / "out")
    csv.write_text(csv.read_text().replace("high,Low", "high,low"))
    df, classes = _build("folder", settings, tmp_path / "out2")
    assert classes == ["low", "high", "mid"]  # the user's order, unused classes kept
    for bad in ([], ["a", "a"], ["a;b"], [" a"]):
        with pytest.raises(ParamsError, match=r"data\.folder\.classes"):
            parse_data({"data": {"dataset": "folder", "folder": {**settings, "classes": bad}}})


def test_folder_without_class_list_flags_rare_and_look_alike_classes(tmp_path, caplog):
    audio, csv = _folder(tmp_path, ["fname,labels,subset", "a.wav,low,curated",
                                    "b.wav,low,curated", "d.wav,Low,curated",
                                    'sub/c.flac,"low,high pitch,High  Pitch",test'])
    with caplog.at_level(logging.INFO):
        _, classes = _build("folder", {"audio_dir": str(audio), "csv": str(csv)},
                            tmp_path / "out")
    assert classes == ["High  Pitch", "Low", "high pitch", "low"]
    assert "clips per class: High  Pitch 1, Low 1, high pitch 1, low 3" in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("fewer than 2 clips: High  Pitch, Low, high pitch" in w for w in warnings)
    assert any("differ only in case or spaces: 'High  Pitch' / 'high pitch'; 'Low' / 'low'"
               in w for w in warnings)


def test_folder_source_needs_its_paths():
    with pytest.raises(Exception, match=r"data\.folder: .*audio_dir"):
        parse_data({"data": {"dataset": "folder"}})


# ---------------------------------------------------------------------- FSDKaggle2019


def _fsdk_archives(tmp_path: Path) -> dict[str, Path]:
    build, srv = tmp_path / "build", tmp_path / "srv"
    srv.mkdir()
    p = fsdkaggle2019.PREFIX
    meta = build / f"{p}.meta"
    meta.mkdir(parents=True)
    curated = pd.DataFrame({"fname": ["f76181c4.wav", "1d44b0bd.wav", "aaaa0001.wav",
                                      "aaaa0002.wav"],
                            "labels": ["Bark,Growling", "Purr", "Purr", "Bark"],
                            "freesound_id": [1, 2, 3, 4], "license": "CC-BY"})
    noisy = pd.DataFrame({"fname": [f"n{i:07d}.wav" for i in range(5)],
                          "labels": ["Purr", "Bark,Purr", "Growling", "Bark", "Purr"],
                          "flickr_video_URL": "http://flickr.com/x"})
    test = pd.DataFrame({"fname": ["t0000001.wav", "t0000002.wav"],
                         "labels": ["Growling,Bark", "Purr"], "usage": "Public",
                         "freesound_id": [5, 6], "license": "CC0"})
    curated.to_csv(meta / "train_curated_post_competition.csv", index=False)
    noisy.to_csv(meta / "train_noisy_post_competition.csv", index=False)
    test.to_csv(meta / "test_post_competition.csv", index=False)
    (meta / "vocabulary.csv").write_text("0,Bark\n1,Growling\n2,Purr\n")
    files = {f"{p}.meta.zip": _zip_dir(meta, srv / f"{p}.meta.zip")}
    for subset, table in (("train_curated", curated), ("test", test), ("train_noisy", noisy)):
        folder = build / f"{p}.audio_{subset}"
        for i, name in enumerate(table["fname"]):
            _tone(folder / name, sr=44100, seconds=1.0 if subset == "train_noisy" else 0.1,
                  freq=300 + 50 * i, silent=name == "1d44b0bd.wav",
                  noise=subset == "train_noisy")
        if subset != "train_noisy":
            files[f"{p}.audio_{subset}.zip"] = _zip_dir(folder, srv / f"{p}.audio_{subset}.zip")
    # the noisy set as upstream ships it: a split zip, 6 parts + the .zip
    subprocess.run(["zip", "-q", "-0", "-s", "64k", "-r", str(srv / f"{p}.audio_train_noisy.zip"),
                    f"{p}.audio_train_noisy"], cwd=build, check=True)
    for part in sorted(srv.glob(f"{p}.audio_train_noisy.*")):
        files[part.name] = part
    return files


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs Info-ZIP to build a split zip")
def test_fsdkaggle2019_subsets_labels_split_zip_and_known_issues(tmp_path, caplog):
    files = _fsdk_archives(tmp_path)
    assert len([n for n in files if "noisy" in n]) == 7  # .z01 ... .z06 + .zip
    record = {"files": [{"key": n, "checksum": _digest(f, "md5")} for n, f in files.items()]}
    (tmp_path / "record.json").write_text(json.dumps(record))
    with serve() as srv, caplog.at_level(logging.WARNING):
        for name, path in files.items():
            srv.add(path, f"records/3612637/files/{name}")
        srv.add(tmp_path / "record.json", "api/records/3612637")
        settings = {"base_url": srv.url("records/3612637/files"),
                    "checksums_url": srv.url("api/records/3612637")}
        df, classes = _build("fsdkaggle2019", settings, tmp_path / "out", max_bad=0.1)
        quick, _ = _build("fsdkaggle2019", {**settings, "include_noisy": False},
                          tmp_path / "out2", max_bad=0.2)
    assert classes == ["Bark", "Growling", "Purr"]
    df = df.set_index("clip_id")
    assert df["subset"].value_counts().to_dict() == {"noisy": 5, "curated": 3, "test": 2}
    assert df.loc["f76181c4", "labels"] == "Bark;Growling"  # quoted, comma-separated
    assert df.loc["t0000001", "labels"] == "Growling;Bark" and df.loc["t0000001", "fold"] == -1
    assert df.loc["n0000001", "labels"] == "Bark;Purr"
    assert "1d44b0bd" not in df.index  # silent: screened out and reported
    assert pd.read_csv(tmp_path / "out" / BAD_CLIPS_NAME)["clip_id"].tolist() == ["1d44b0bd"]
    issues = pd.read_csv(tmp_path / "out" / fsdkaggle2019.KNOWN_ISSUES_NAME)
    assert issues.to_dict("records") == [{"clip_id": "f76181c4", "issue": "mislabeled"},
                                         {"clip_id": "1d44b0bd", "issue": "silent"}]
    assert set(quick["subset"]) == {"curated", "test"}
    # the noisy parts were downloaded once (for the first build), never for include_noisy=false
    noisy_gets = [p for p, _ in srv.requests if "noisy" in p]
    assert len(noisy_gets) == 7


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs Info-ZIP to build a split zip")
def test_fsdkaggle2019_checksum_from_the_record_is_enforced(tmp_path):
    files = _fsdk_archives(tmp_path)
    record = {"files": [{"key": n, "checksum": "md5:" + "0" * 32} for n in files]}
    (tmp_path / "record.json").write_text(json.dumps(record))
    with serve() as srv:
        for name, path in files.items():
            srv.add(path, f"files/{name}")
        srv.add(tmp_path / "record.json", "api/record")
        with pytest.raises(DataSourceError, match=r"FSDKaggle2019\.meta\.zip.*checksum"):
            _build("fsdkaggle2019", {"base_url": srv.url("files"),
                                     "checksums_url": srv.url("api/record")}, tmp_path / "out")


# ------------------------------------------------------ caches, mirrors, temp paths


def test_esc50_truncated_download_is_fetched_again_not_cached(tmp_path, caplog):
    archive = _esc50_archive(tmp_path)
    with serve() as srv:
        url = srv.add(archive, "master.zip")
        srv.short_once["/master.zip"] = archive.stat().st_size // 2
        df, _ = _build("esc50", {"url": url}, tmp_path / "out")
        again, _ = _build("esc50", {"url": url}, tmp_path / "out2")
    assert len(df) == len(again) == 30
    assert len(srv.requests) == 2  # the cut copy was refused once, the good one cached


def _run_download(tmp_path: Path, monkeypatch, params: dict) -> int:
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["download.py", "--out", "data/raw"])
    try:
        runpy.run_path(str(repo / "stages" / "download.py"), run_name="__main__")
    except SystemExit as exit_info:
        return int(exit_info.code)
    return 0


def test_bad_clips_and_errors_name_the_final_path_not_the_temp_build(tmp_path, monkeypatch,
                                                                     caplog):
    archive = _esc50_archive(tmp_path)
    top = tmp_path / "build" / "ESC-50-master"
    (top / "audio" / "1-1000-A-0.wav").write_bytes(b"RIFF....not audio")  # no decoder reads it
    _zip_dir(top, archive)
    with serve() as srv:
        data = {"dataset": "esc50", "esc50": {"url": srv.add(archive)}}
        assert _run_download(tmp_path, monkeypatch,
                             {"data": {**data, "max_bad_fraction": 0.1}}) == 0
        bad = pd.read_csv(tmp_path / "data" / "raw" / BAD_CLIPS_NAME)
        assert bad["clip_id"].tolist() == ["1-1000-A-0"]
        assert ".partial" not in bad["problem"][0]
        assert "data/raw/esc50/ESC-50-master/audio/1-1000-A-0.wav" in bad["problem"][0]
        assert ".partial" not in caplog.text
        caplog.clear()
        assert _run_download(tmp_path, monkeypatch,
                             {"data": {**data, "max_bad_fraction": 0.0}}) == 2
    assert "1 of 30 clips" in caplog.text and ".partial" not in caplog.text
    assert "data/raw/esc50/ESC-50-master/audio/1-1000-A-0.wav" in caplog.text


def _fsdk_serve(srv, files: dict[str, Path], base: str = "files") -> None:
    for name, path in files.items():
        srv.add(path, f"{base}/{name}")


def _record(tmp_path: Path, files: dict[str, Path]) -> Path:
    record = {"files": [{"key": n, "checksum": _digest(f, "md5")} for n, f in files.items()]}
    path = tmp_path / "record.json"
    path.write_text(json.dumps(record))
    return path


def _md5sums(tmp_path: Path, files: dict[str, Path], wrong: str = "") -> Path:
    lines = [f"{'0' * 32 if n == wrong else _digest(f, 'md5')[4:]}  {n}"
             for n, f in files.items()]
    path = tmp_path / "md5sums.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


needs_zip = pytest.mark.skipif(shutil.which("zip") is None, reason="needs Info-ZIP")


@needs_zip
def test_fsdkaggle2019_mirror_checksums_from_the_mirror_not_zenodo(tmp_path):
    files = _fsdk_archives(tmp_path)
    with serve() as srv:
        _fsdk_serve(srv, files)
        srv.add(_record(tmp_path, files), "files/record.json")
        # checksums_url left at Zenodo's, which this machine cannot reach
        df, _ = _build("fsdkaggle2019", {"base_url": srv.url("files"), "include_noisy": False},
                       tmp_path / "out", max_bad=0.2)
    assert len(df) == 5
    assert ("/files/record.json", None) in srv.requests


@needs_zip
def test_fsdkaggle2019_mirror_md5_list_is_enforced(tmp_path):
    files = _fsdk_archives(tmp_path)
    with serve() as srv:
        _fsdk_serve(srv, files)
        srv.add(_md5sums(tmp_path, files, wrong=fsdkaggle2019.META), "files/MD5SUMS")
        with pytest.raises(DataSourceError, match=r"FSDKaggle2019\.meta\.zip.*md5 checksum "
                                                  r"mismatch: expected 0{32}"):
            _build("fsdkaggle2019", {"base_url": srv.url("files"), "include_noisy": False},
                   tmp_path / "out")


@needs_zip
def test_fsdkaggle2019_local_checksums_file(tmp_path):
    files = _fsdk_archives(tmp_path)
    sums = _md5sums(tmp_path, files)
    with serve() as srv:
        _fsdk_serve(srv, files)
        df, _ = _build("fsdkaggle2019", {"base_url": srv.url("files"), "include_noisy": False,
                                         "checksums_file": str(sums)},
                       tmp_path / "out", max_bad=0.2)
    assert len(df) == 5
    assert not [p for p, _ in srv.requests if not p.startswith("/files/FSDKaggle2019")]


@needs_zip
def test_fsdkaggle2019_mirror_without_checksums_names_the_params(tmp_path):
    files = _fsdk_archives(tmp_path)
    with serve() as srv:
        _fsdk_serve(srv, files)
        with pytest.raises(DataSourceError) as err:
            _build("fsdkaggle2019", {"base_url": srv.url("files")}, tmp_path / "out")
    text = str(err.value)
    assert "data.fsdkaggle2019.checksums_file" in text
    assert "data.fsdkaggle2019.checksums_url: null" in text
    assert "md5sums.txt" in text
    assert not [p for p, _ in srv.requests if "audio" in p]  # nothing downloaded unverified


@needs_zip
def test_fsdkaggle2019_joined_zip_from_a_corrupt_part_is_rebuilt(tmp_path, caplog):
    files = _fsdk_archives(tmp_path)
    part = f"/files/{fsdkaggle2019.PREFIX}.audio_train_noisy.z02"
    with serve() as srv:
        _fsdk_serve(srv, files)
        srv.corrupt_once.add(part)  # no checksum to catch it: only the zip CRCs can
        settings = {"base_url": srv.url("files"), "checksums_url": None}
        with caplog.at_level(logging.INFO):
            df, _ = _build("fsdkaggle2019", settings, tmp_path / "out", max_bad=0.1)
            again, _ = _build("fsdkaggle2019", settings, tmp_path / "out2", max_bad=0.1)
    assert (df["subset"] == "noisy").sum() == 5 and df.equals(again)
    assert [p for p, _ in srv.requests].count(part) == 2  # the bad part, fetched again once
    assert "z02" in caplog.text and "CRC" in caplog.text
    assert caplog.text.count("joined 7 parts") == 2  # once bad, once good; then reused


@needs_zip
def test_fsdkaggle2019_joined_zip_is_keyed_by_its_parts(tmp_path):
    files = _fsdk_archives(tmp_path)
    with serve() as srv:
        _fsdk_serve(srv, files)
        srv.add(_record(tmp_path, files), "api/record")
        settings = {"base_url": srv.url("files"), "checksums_url": srv.url("api/record")}
        _build("fsdkaggle2019", settings, tmp_path / "out", max_bad=0.1)
        joined = list((fetch.cache_dir() / "fsdkaggle2019").glob("*joined*.zip"))
        assert len(joined) == 1
        joined[0].write_bytes(joined[0].read_bytes()[:-100])  # damaged in the cache
        df, _ = _build("fsdkaggle2019", settings, tmp_path / "out2", max_bad=0.1)
    assert (df["subset"] == "noisy").sum() == 5


@needs_zip
def test_fsdkaggle2019_duplicate_clip_names_the_upstream_csv_line(tmp_path):
    files = _fsdk_archives(tmp_path)
    meta = tmp_path / "build" / f"{fsdkaggle2019.PREFIX}.meta"
    csv = meta / "train_curated_post_competition.csv"
    csv.write_text(csv.read_text() + "aaaa0001.wav,Bark,7,CC-BY\n")  # line 6 repeats line 4
    files[fsdkaggle2019.META] = _zip_dir(meta, files[fsdkaggle2019.META])
    with serve() as srv:
        _fsdk_serve(srv, files)
        with pytest.raises(DataSourceError, match=r"train_curated_post_competition\.csv: "
                                                  r"line 6: .*aaaa0001.* line 4"):
            _build("fsdkaggle2019", {"base_url": srv.url("files"), "checksums_url": None,
                                     "include_noisy": False}, tmp_path / "out", max_bad=0.2)


@needs_zip
def test_fsdkaggle2019_cut_record_json_is_not_cached(tmp_path):
    files = _fsdk_archives(tmp_path)
    record = _record(tmp_path, files)
    with serve() as srv:
        _fsdk_serve(srv, files)
        srv.add(record, "api/record")
        srv.short_once["/api/record"] = record.stat().st_size // 2  # Content-Length agrees
        df, _ = _build("fsdkaggle2019", {"base_url": srv.url("files"),
                                         "checksums_url": srv.url("api/record"),
                                         "include_noisy": False}, tmp_path / "out", max_bad=0.2)
    assert len(df) == 5
    assert [p for p, _ in srv.requests].count("/api/record") == 2


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs Info-ZIP to build a split zip")
def test_fsdkaggle2019_label_outside_the_vocabulary_names_the_csv_row(tmp_path):
    _fsdk_archives(tmp_path)
    meta = tmp_path / "build" / f"{fsdkaggle2019.PREFIX}.meta"
    (meta / "vocabulary.csv").write_text("0,Purr\n1,Growling\n2,Bark\n")  # not sorted
    settings = {"local_dir": str(tmp_path / "build"), "checksums_url": None}
    df, classes = _build("fsdkaggle2019", settings, tmp_path / "out", max_bad=0.2)
    assert classes == ["Purr", "Growling", "Bark"]  # the vocabulary's order
    noisy = meta / "train_noisy_post_competition.csv"
    noisy.write_text(noisy.read_text().replace('"Bark,Purr"', '"Bark,Meow"'))
    with pytest.raises(DataSourceError, match=r"train_noisy_post_competition\.csv: line 3 "
                                              r"\(fname='n0000001\.wav'\): label 'Meow' is not "
                                              r"in vocabulary\.csv"):
        _build("fsdkaggle2019", settings, tmp_path / "out2", max_bad=0.2)


@pytest.mark.parametrize(("second", "linked"), [
    ("sub\\c.flac", None),  # a Windows separator: the same path
    ("./sub//c.flac", None),
    ("e.flac", "symlink"),  # another name for the same file
    ("e.flac", "hardlink"),
])
def test_folder_duplicates_are_found_by_the_file_they_open(tmp_path, second, linked):
    # issue 33 item 2: `low\low_0.wav` beside `low/low_0.wav` put one clip in curated and test
    audio, csv = _folder(tmp_path, ["fname,labels,subset", "a.wav,Bark,curated",
                                    "sub/c.flac,Bark,curated", f"{second},Bark,test"])
    if linked == "symlink":
        (audio / "e.flac").symlink_to(audio / "sub" / "c.flac")
    elif linked == "hardlink":
        os.link(audio / "sub" / "c.flac", audio / "e.flac")
    fname = re.escape(repr(second))
    with pytest.raises(DataSourceError, match=rf"labels\.csv: line 4 \(fname={fname}\): same "
                                              r"file as line 3 \(fname='sub/c\.flac'\)"):
        _build("folder", {"audio_dir": str(audio), "csv": str(csv)}, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_folder_labels_in_two_unicode_forms_or_with_invisible_characters_are_one_class(
        tmp_path, caplog):
    # issue 33 item 3: 'Café' NFC and NFD, and 'mid' + a zero-width space, were 2 classes each
    nfc, nfd = "Caf\u00e9", "Cafe\u0301"
    audio, csv = _folder(tmp_path, ["fname,labels,subset", f"a.wav,{nfc},curated",
                                    f'b.wav,"{nfd},mid",curated', "d.wav,mid,test",
                                    "sub/c.flac,\ufeffmid\u200b,test"])
    with caplog.at_level(logging.WARNING):
        df, classes = _build("folder", {"audio_dir": str(audio), "csv": str(csv)},
                             tmp_path / "out")
    assert classes == [nfc, "mid"]
    assert df["labels"].tolist() == [nfc, f"{nfc};mid", "mid", "mid"]
    assert "invisible characters removed from the labels of line 5" in caplog.text
    settings = {"audio_dir": str(audio), "csv": str(csv), "classes": [nfd, "mid\u200b"]}
    _, classes = _build("folder", settings, tmp_path / "out2")  # the class list too
    assert classes == [nfc, "mid"]
    with pytest.raises(ParamsError, match=r"data\.folder\.classes.*'Café' is listed twice"):
        parse_data({"data": {"dataset": "folder", "folder": {**settings,
                                                             "classes": [nfc, nfd]}}})


def test_folder_look_alike_classes_include_compatibility_forms(tmp_path, caplog):
    audio, csv = _folder(tmp_path, ["fname,labels,subset", "a.wav,mid,curated",
                                    "b.wav,\uff4d\uff49\uff44,curated", "d.wav,mid,test"])
    with caplog.at_level(logging.WARNING):
        _build("folder", {"audio_dir": str(audio), "csv": str(csv)}, tmp_path / "out")
    assert "differ only in case or spaces: 'mid' / 'ｍｉｄ'" in caplog.text


# ------------------------------------------------- issue 33: bad input, third round (7-13)


def _folder_fails(tmp_path: Path, rows: list[str], message: str, **settings) -> None:
    audio, csv = _folder(tmp_path, rows)
    for name in settings.pop("extra", ()):
        _tone(audio / name)
    with pytest.raises(DataSourceError, match=rf"labels\.csv: {message}"):
        _build("folder", {"audio_dir": str(audio), "csv": str(csv), **settings},
               tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.csv").exists()


def test_a_test_set_without_any_label_is_refused_in_download(tmp_path):
    # item 7: it passed download, then evaluate@ failed inside sklearn
    rows = ["fname,labels,subset", "a.wav,Bark,curated", "b.wav,Purr,curated", "d.wav,,test",
            "sub/c.flac,,test"]
    _folder_fails(tmp_path, rows, r"line 4 \(fname='d\.wav'\): the test subset \(2 clips\) "
                                  r"has no labels at all: evaluate@ has nothing to score")
    df, _ = _build("folder", {"audio_dir": str(tmp_path / "mine"),
                              "csv": str(tmp_path / "labels.csv")}, tmp_path / "out2",
                   allow_unlabelled=True)  # the user says so: kept
    assert df.loc[df["subset"] == "test", "labels"].tolist() == ["", ""]


@pytest.mark.parametrize("name", ["clip_id", "labels", "path", "tags"])
def test_a_class_named_like_a_predictions_column_is_refused(tmp_path, name):
    # item 8: accepted, then evaluate@ (clip_id, labels) or predict (path, tags) broke
    _folder_fails(tmp_path, ["fname,labels,subset", "a.wav,Bark,curated",
                             f'b.wav,"Purr,{name}",curated', "d.wav,Bark,test"],
                  rf"line 3 \(fname='b\.wav'\): class {name!r} is the name of a column of "
                  r"the predictions tables \(clip_id, labels, path, tags\); rename it")
    with pytest.raises(ParamsError, match=rf"data\.folder\.classes.*{name!r} is the name"):
        parse_data({"data": {"dataset": "folder", "folder": {
            "audio_dir": "x", "csv": "y", "classes": ["Bark", name]}}})


def test_a_label_with_a_line_break_names_the_users_csv_line(tmp_path):
    # item 9: accepted, and features failed pointing at the generated manifest
    _folder_fails(tmp_path, ["fname,labels,subset", "a.wav,Bark,curated",
                             'b.wav,"Purr\nGrowl",curated', "d.wav,Bark,test"],
                  r"line 3: a quoted field holds a line break \('Purr\\nGrowl'\)")


@pytest.mark.parametrize(("rows", "extra", "message"), [
    (["fname,labels,subset", "a.wav,Bark,curated", "x.wav,Bark,test"], (),
     r"line 3 \(fname='x\.wav'\): is a directory, not an audio file"),
    (["fname,labels,subset", "a.wav,Bark,curated", "a.flac,Bark,test"], ("a.flac",),
     r"line 3 \(fname='a\.flac'\): a different file with the same clip id 'a' as line 2 "
     r"\(fname='a\.wav'\): clip ids leave out the extension; rename one of the files"),
    (["fname,labels", "a.wav,Bark,Growling", "b.wav,Purr"], (),
     r"line 2: 3 fields, but the header has 2 \(fname, labels\): quote a labels field "
     r"with several names, e.g\. \"Bark,Growling\""),
    (["fname,labels,subset", "a.wav,Bark,curated", "A.wav,Bark,test"], ("A.wav",),
     r"line 3 \(fname='A\.wav'\): differs from line 2 \(fname='a\.wav'\) only in case: one "
     r"file in data/raw on a case-insensitive file system \(macOS, Windows\); rename one"),
])
def test_unclear_folder_errors_say_what_is_wrong(tmp_path, rows, extra, message):
    # item 11 and "found by reading" (a.wav/A.wav); x.wav is a folder
    (tmp_path / "mine" / "x.wav").mkdir(parents=True)
    _folder_fails(tmp_path, rows, message, extra=extra)


@pytest.mark.parametrize(("encode", "message"), [
    (lambda text: text.encode("latin-1"),
     r"line 3: not UTF-8 \(byte 0xe9\); save it as UTF-8 \(this looks like Latin-1 or "
     r"Windows-1252\)"),
    (lambda text: text.encode("utf-16"),
     r"not UTF-8 but UTF-16 \(it starts with a UTF-16 byte-order mark\); save it as UTF-8"),
])
def test_a_labels_csv_that_is_not_utf8_names_the_line_and_the_encoding(tmp_path, encode,
                                                                        message):
    # item 11: the codec's message, with no line number and no hint of the encoding
    audio, csv = _folder(tmp_path, [])
    csv.write_bytes(encode("fname,labels,subset\na.wav,Bark,curated\nb.wav,Caf\u00e9,test\n"))
    with pytest.raises(DataSourceError, match=rf"labels\.csv: {message}"):
        _build("folder", {"audio_dir": str(audio), "csv": str(csv)}, tmp_path / "out")


def test_an_unreadable_file_is_listed_in_bad_clips_not_a_traceback(tmp_path, monkeypatch):
    # found by reading: a PermissionError from the copy (another disk: no hard link) escaped
    from audiotag.data import common
    audio, csv = _folder(tmp_path, ["fname,labels,subset", "a.wav,Bark,curated",
                                    "b.wav,Bark,curated", "d.wav,Bark,test",
                                    "sub/c.flac,Bark,test"])
    copy = common.shutil.copy2

    def no_link(src, dst):
        raise OSError(18, "Invalid cross-device link")

    def copy2(src, dst):
        if Path(src).name == "b.wav":
            raise PermissionError(13, "Permission denied", str(src))
        return copy(src, dst)

    monkeypatch.setattr(common.os, "link", no_link)
    monkeypatch.setattr(common.shutil, "copy2", copy2)
    df, _ = _build("folder", {"audio_dir": str(audio), "csv": str(csv)}, tmp_path / "out",
                   max_bad=0.5)
    assert "b" not in df["clip_id"].tolist() and len(df) == 3
    bad = pd.read_csv(tmp_path / "out" / BAD_CLIPS_NAME)
    assert bad["clip_id"].tolist() == ["b"] and bad["action"].tolist() == ["excluded"]
    assert bad["problem"][0].startswith("unreadable: ") and "Permission denied" in \
        bad["problem"][0] and "b.wav" in bad["problem"][0]
