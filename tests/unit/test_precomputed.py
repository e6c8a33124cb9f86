"""Issue 34 item 6: the course's precomputed features (per-clip ``.npy`` arrays of 128 mel +
12 chroma, beat-synchronous, and a labels CSV with genre + numeric targets) as a dataset
source, through download -> features -> a short multitask training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audiotag.contracts.store import read_store_index
from audiotag.core.errors import DataSourceError, ParamsError
from audiotag.data.config import SplitConfig
from audiotag.data.manifest import read_manifest, validate_manifest, write_manifest
from audiotag.data.sources import build_dataset, parse_data, parse_data_checks
from audiotag.features.config import FeaturesConfig
from audiotag.features.store import extract_features

BANDS = 140  # 128 mel + 12 chroma
COURSE = FeaturesConfig(kind="logmel+chroma", n_mels=128, beat_sync=True, workers=0)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _course(root: Path, n: int = 16, extra_rows: tuple[str, ...] = (),
            arrays: dict[str, np.ndarray] | None = None) -> tuple[Path, Path]:
    """A folder laid out as the course distributed it: ``npy/<id>.npy`` (140, beats) and
    ``labels.csv`` (fname, genre, tempo, valence); each genre has its own mean."""
    rng = np.random.default_rng(0)
    rows = ["fname,genre,tempo,valence"]
    for i in range(n):
        genre = ("rock", "jazz")[i % 2]
        array = rng.standard_normal((BANDS, 6 + i % 9)).astype(np.float32) + 2.0 * (i % 2)
        path = root / "npy" / f"{genre}.{i:05d}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, array)
        rows.append(f"{path.name},{genre},{100 + i},{'' if i == 3 else i / n}")
    for name, array in (arrays or {}).items():
        np.save(root / "npy" / name, array)
    (root / "labels.csv").write_text("\n".join([*rows, *extra_rows]) + "\n")
    return root / "npy", root / "labels.csv"


def _build(npy: Path, csv: Path, out: Path, max_bad: float = 0.0, **settings):
    raw = {"data": {"dataset": "precomputed", "max_bad_fraction": max_bad,
                    "precomputed": {"features_dir": str(npy), "csv": str(csv),
                                    "target_columns": ["tempo", "valence"], **settings}}}
    source, cfg = parse_data(raw)
    out.mkdir(parents=True, exist_ok=True)
    df, classes = build_dataset(source, cfg, out, 0, parse_data_checks(raw))
    validate_manifest(df, classes)
    write_manifest(df, classes, out)
    return df, classes


def test_course_arrays_to_a_feature_store_and_a_multitask_model(tmp_path):
    from audiotag.training.config import TrainConfig
    from audiotag.training.run import train_model

    npy, csv = _course(tmp_path / "course")
    df, classes = _build(npy, csv, tmp_path / "raw")
    assert classes == ["jazz", "rock"]
    clip = df.set_index("clip_id").loc["rock.00002"]
    assert clip["labels"] == "rock" and clip["targets_tempo"] == 102
    assert clip["duration_s"] == 6 + 2  # frames (beats), sample_rate 1
    assert np.isnan(df.set_index("clip_id").loc["jazz.00003", "targets_valence"])
    assert set(df["subset"]) == {"curated", "test"}  # no subset column: a seeded test share

    manifest, classes = read_manifest(tmp_path / "raw")
    extract_features(manifest, classes, tmp_path / "raw", tmp_path / "features", COURSE,
                     SplitConfig(valid_fold=0))
    index = read_store_index(tmp_path / "features").set_index("clip_id")
    row = index.loc["rock.00002"]
    assert row["length"] == 8  # the whole beat sequence, never cropped or padded
    frames = np.load(tmp_path / "features" / f"{row['subset']}.npy", mmap_mode="r")
    stored = frames[row["offset"]:row["offset"] + row["length"]]
    np.testing.assert_array_equal(stored, np.load(npy / "rock.00002.npy").T.astype(np.float16))

    cfg = TrainConfig(models=["lstm"], task="multitask", epochs=2, batch_size=4, lr=0.01,
                      device="cpu", train_score_clips=0)
    history = train_model("lstm", {"hidden": 8}, tmp_path / "features", tmp_path / "model",
                          tmp_path / "live", cfg, 0)
    assert len(history) == 2 and (tmp_path / "model" / "model.pt").is_file()
    from audiotag.training.checkpoint import load_checkpoint

    model, meta = load_checkpoint(tmp_path / "model" / "model.pt")
    assert meta.n_mels == BANDS and meta.num_classes == 2 + 2  # 2 genres + 2 targets


def test_arrays_of_other_bands_name_the_file_and_the_setting(tmp_path):
    npy, csv = _course(tmp_path / "course", n=4)
    _build(npy, csv, tmp_path / "raw")
    manifest, classes = read_manifest(tmp_path / "raw")
    logmel = COURSE.model_copy(update={"kind": "logmel"})  # 128 bands, the arrays have 140
    with pytest.raises(DataSourceError, match=r"rock\.0000\d\.npy.*\(140, \d+\).*"
                                              r"features\.kind=logmel expects \(128, frames\)"):
        extract_features(manifest, classes, tmp_path / "raw", tmp_path / "features", logmel,
                         SplitConfig(valid_fold=0))


def test_bad_arrays_are_screened_out_and_listed(tmp_path):
    nan = np.ones((BANDS, 5), np.float32)
    nan[3, 2] = np.nan
    npy, csv = _course(tmp_path / "course", n=8,
                       extra_rows=("has_nan.npy,rock,1,0", "flat.npy,jazz,1,0",
                                   "empty.npy,jazz,1,0"),
                       arrays={"has_nan.npy": nan, "flat.npy": np.ones(7),
                               "empty.npy": np.ones((BANDS, 0))})
    df, _ = _build(npy, csv, tmp_path / "raw", max_bad=0.5)
    assert len(df) == 8
    bad = pd.read_csv(tmp_path / "raw" / "bad_clips.csv").set_index("clip_id")["problem"]
    assert bad["has_nan"].startswith("non-finite: NaN or infinite value at frame 2")
    assert bad["flat"].startswith("unreadable: expected a numeric (bands, frames) array")
    assert bad["empty"] == "empty: no frames"


@pytest.mark.parametrize(("row", "message"), [
    ("notes.txt,rock,1,0", r"line 18 \(fname='notes.txt'\): not a \.npy array"),
    ("extra.npy,rock,fast,0", r"line 18 \(fname='extra.npy'\): tempo='fast' is not a number"),
    ("rock.00000.npy,rock,1,0", r"line 18 \(fname='rock.00000.npy'\): same file as line 2"),
    ("../x.npy,rock,1,0", r"line 18 \(fname='../x.npy'\): fname must be relative"),
])
def test_bad_rows_name_the_csv_line(tmp_path, row, message):
    npy, csv = _course(tmp_path / "course", extra_rows=(row,),
                       arrays={"extra.npy": np.ones((BANDS, 4))})
    (npy / "notes.txt").write_text("x")
    with pytest.raises(DataSourceError, match=message):
        _build(npy, csv, tmp_path / "raw")


def test_the_source_needs_its_paths_and_label_column(tmp_path):
    with pytest.raises(ParamsError, match=r"data\.precomputed: .*features_dir"):
        parse_data({"data": {"dataset": "precomputed", "precomputed": {"csv": "x.csv"}}})
    npy, csv = _course(tmp_path / "course", n=4)
    with pytest.raises(DataSourceError, match=r"labels\.csv: labels file lacks column.*mood"):
        _build(npy, csv, tmp_path / "raw", label_column="mood")
