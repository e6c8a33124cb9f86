"""benchmarks/fsdd_noisy.py (issue 31): the real-audio noisy set built from FSDD, on a small
archive laid out like FSDD's (tones instead of speech): same seed same bytes, each noise
kind doing what it says on disjoint clips at its rate, test takes kept out of training, and
the folder source reading the set with its true labels."""

from __future__ import annotations

import csv
import importlib
import io
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
import yaml

from audiotag.data.sources import build_dataset, parse_data, parse_data_checks
from audiotag.params_check import check_params

SMALL = {"n_curated": 20, "n_noisy": 100, "n_test": 20, "min_seconds": 1.0, "max_seconds": 1.5}


@pytest.fixture()
def fsdd_noisy(monkeypatch, repo_root):
    # run as a script, the benchmark's directory is sys.path[0]
    monkeypatch.syspath_prepend(str(repo_root / "benchmarks"))
    return importlib.import_module("fsdd_noisy")


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """An FSDD-like tarball: digits 0-9, 2 speakers, takes 0-7 (0-4: the test takes)."""
    path = tmp_path_factory.mktemp("fsdd") / "free-spoken-digit-dataset-1.0.10.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for digit in range(10):
            for s, speaker in enumerate(("george", "lucas")):
                for take in range(8):
                    t = np.arange(int(8000 * (0.2 + 0.02 * take))) / 8000
                    tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * digit + 20 * s) * t)
                    buf = io.BytesIO()
                    with wave.open(buf, "wb") as w:
                        w.setnchannels(1)
                        w.setsampwidth(2)
                        w.setframerate(8000)
                        w.writeframes(np.round(tone * 32767).astype("<i2").tobytes())
                    info = tarfile.TarInfo(f"free-spoken-digit-dataset-1.0.10/recordings/"
                                           f"{digit}_{speaker}_{take}.wav")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def _rows(out: Path) -> list[dict[str, str]]:
    with (out / "labels.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _names(text: str) -> set[str]:
    return {name for name in text.split(",") if name}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_same_bytes(fsdd_noisy, archive, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        fsdd_noisy.build(tmp_path / name, seed, archive=archive, **SMALL)
    first = _files(tmp_path / "a")
    assert len(first) == 1 + 140  # labels.csv and every clip
    assert first == _files(tmp_path / "b")
    other = _files(tmp_path / "c")
    assert other["labels.csv"] != first["labels.csv"]
    assert other["audio/test/test_0000.wav"] != first["audio/test/test_0000.wav"]


def test_each_noise_kind_hits_its_share_of_disjoint_noisy_clips(fsdd_noisy, archive, tmp_path):
    rates = {"missing": 0.12, "confusion": 0.08, "open_set": 0.16, "random": 0.04}
    fsdd_noisy.build(tmp_path / "set", 0, archive=archive, **SMALL, **rates)
    rows = _rows(tmp_path / "set")
    vocabulary = set(fsdd_noisy.VOCABULARY)
    hit = {kind: [r for r in rows if r["noise"] == kind] for kind in rates}
    for kind, rate in rates.items():  # within one clip of the flag
        assert abs(len(hit[kind]) - rate * SMALL["n_noisy"]) <= 1, kind
    assert {r["noise"] for r in rows} == {"", *rates}  # one kind per clip, nothing else
    for r in rows:
        labels, truth = _names(r["labels"]), _names(r["true_labels"])
        assert labels and labels <= vocabulary and truth <= vocabulary
        if r["noise"]:
            assert r["subset"] == "noisy" and labels != truth
        else:
            assert labels == truth
    for r in hit["missing"]:
        assert _names(r["labels"]) < _names(r["true_labels"])
        assert len(_names(r["true_labels"])) - len(_names(r["labels"])) == 1
    for r in hit["confusion"]:
        (wrong,), (right,) = (_names(r["labels"]) - _names(r["true_labels"]),
                              _names(r["true_labels"]) - _names(r["labels"]))
        assert fsdd_noisy.RELATED[wrong] == right


def test_open_set_clips_hold_an_out_of_vocabulary_digit_their_truth_lacks(fsdd_noisy, archive,
                                                                         tmp_path):
    fsdd_noisy.build(tmp_path / "set", 1, archive=archive, **SMALL)
    oov = {str(fsdd_noisy.DIGITS.index(d)) for d in fsdd_noisy.OUT_OF_VOCABULARY}
    for r in _rows(tmp_path / "set"):
        heard = [name.split("_")[0] for name in r["recordings"].split(";")]
        if r["noise"] == "open_set":
            (gone,) = _names(r["labels"]) - _names(r["true_labels"])  # labelled, not heard
            assert str(fsdd_noisy.DIGITS.index(gone)) not in heard
            assert sum(d in oov for d in heard) == 1
            assert _names(r["true_labels"]) < _names(r["labels"])
        else:
            assert not oov & set(heard)
            assert sorted(heard) == sorted(str(fsdd_noisy.DIGITS.index(d))
                                           for d in _names(r["true_labels"]))


def test_test_takes_are_never_in_training_clips(fsdd_noisy, archive, tmp_path):
    fsdd_noisy.build(tmp_path / "set", 2, archive=archive, **SMALL)
    takes = {"test": set(), "train": set()}
    for r in _rows(tmp_path / "set"):
        part = "test" if r["subset"] == "test" else "train"
        takes[part] |= {int(name.split("_")[2]) for name in r["recordings"].split(";")}
    assert takes["test"] and takes["test"] <= set(range(5))
    assert takes["train"] and takes["train"] <= set(range(5, 8))


def _band_share(path: Path, hz: float) -> float:
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768
    power = np.abs(np.fft.rfft(x)) ** 2
    return power[np.fft.rfftfreq(len(x), 1 / 8000) > hz].sum() / power.sum()


def test_noisy_audio_passes_the_low_pass_channel(fsdd_noisy, archive, tmp_path):
    fsdd_noisy.build(tmp_path / "set", 0, archive=archive, **SMALL, noisy_lowpass_hz=2000)
    share = {subset: np.mean([_band_share(tmp_path / "set" / "audio" / subset /
                                          f"{subset}_{i:04d}.wav", 3000) for i in range(20)])
             for subset in ("curated", "noisy")}
    assert share["noisy"] < 0.01 * share["curated"]


def test_the_folder_source_reads_the_set_with_its_true_labels(fsdd_noisy, archive, tmp_path,
                                                              repo_root):
    overrides = fsdd_noisy.build(tmp_path / "set", 0, archive=archive, **SMALL)
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["data"].update({k: v for k, v in overrides["data"].items() if k != "folder"})
    raw["data"]["folder"].update(overrides["data"]["folder"])
    raw["features"].update(overrides["features"])
    raw["clean"]["method"] = "oracle"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    check_params(tmp_path / "params.yaml")  # inputs tracked, oracle allowed
    name, cfg = parse_data(raw)
    (tmp_path / "raw").mkdir()
    df, classes = build_dataset(name, cfg, tmp_path / "raw", 0, parse_data_checks(raw))
    assert classes == list(fsdd_noisy.VOCABULARY)
    rows = {r["fname"][:-4]: r for r in _rows(tmp_path / "set")}
    for clip_id, labels, truth in zip(df["clip_id"], df["labels"], df["true_labels"],
                                      strict=True):
        assert labels.split(";") == rows[clip_id]["labels"].split(",")
        assert truth == rows[clip_id]["true_labels"].replace(",", ";")
    assert (df["labels"] != df["true_labels"]).sum() == sum(1 for r in rows.values()
                                                            if r["noise"])
