import pandas as pd
import pytest

from audiotag.data.manifest import (
    ManifestError,
    audio_paths,
    labels_to_matrix,
    read_manifest,
    rebase_paths,
    validate_manifest,
    write_manifest,
)

CLASSES = ["bark", "meow", "chirp"]


def _manifest(**overrides):
    df = pd.DataFrame({
        "clip_id": ["a", "b", "c"],
        "path": ["audio/a.wav", "audio/b.wav", "audio/c.wav"],
        "labels": ["bark", "meow;chirp", ""],
        "subset": ["curated", "noisy", "test"],
        "fold": [0, 1, -1],
        "duration_s": [1.0, 2.5, 3.0],
        "sample_rate": [16000, 16000, 16000],
    })
    for key, value in overrides.items():
        df[key] = value
    return df


def test_round_trip(tmp_path):
    write_manifest(_manifest(), CLASSES, tmp_path)
    df, classes = read_manifest(tmp_path)
    assert classes == CLASSES
    assert df["labels"].tolist() == ["bark", "meow;chirp", ""]
    assert audio_paths(df, tmp_path)[0] == (tmp_path / "audio/a.wav").resolve()
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("column, value, message", [
    ("labels", ["bark", "woof", ""], r"line 3 \(clip_id='b'\): labels: unknown class 'woof'"),
    ("subset", ["curated", "train", "test"], r"line 3 .*subset 'train'"),
    ("clip_id", ["a", "a", "c"], r"line 3 .*duplicate clip_id"),
    ("duration_s", [1.0, -2.0, 3.0], r"line 3 .*duration_s=-2.0"),
    ("fold", [0, 1.5, -1], r"line 3 .*fold=1.5 is not an integer"),
    ("weight", [1.0, -0.5, 1.0], r"line 3 .*weight=-0.5 is not a finite number >= 0"),
    ("weight", [1.0, 1.0, "x"], r"line 4 .*weight='x'"),
    ("targets_valence", [0.5, "high", None], r"line 3 .*targets_valence='high' is not a number"),
])
def test_bad_rows_are_named(column, value, message):
    with pytest.raises(ManifestError, match=message):
        validate_manifest(_manifest(**{column: value}), CLASSES)


def test_optional_weight_and_targets_round_trip(tmp_path):
    write_manifest(_manifest(weight=[1.0, 0.25, 1.0], targets_energy=[0.1, None, 0.9]),
                   CLASSES, tmp_path)
    df, _ = read_manifest(tmp_path)
    assert df["weight"].tolist() == [1.0, 0.25, 1.0]
    assert df["targets_energy"].isna().tolist() == [False, True, False]


def test_missing_column_and_bad_classes():
    with pytest.raises(ManifestError, match="missing column"):
        validate_manifest(_manifest().drop(columns=["fold"]), CLASSES)
    with pytest.raises(ManifestError, match="duplicate class"):
        validate_manifest(_manifest(), ["bark", "bark", "meow", "chirp"])


def test_invalid_manifest_writes_nothing(tmp_path):
    with pytest.raises(ManifestError):
        write_manifest(_manifest(subset=["x", "noisy", "test"]), CLASSES, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_label_matrix_and_rebase(tmp_path):
    matrix = labels_to_matrix(_manifest()["labels"], CLASSES)
    assert matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    moved = rebase_paths(_manifest(), tmp_path / "raw", tmp_path / "clean")
    assert moved["path"][0] == "../raw/audio/a.wav"
    assert audio_paths(moved, tmp_path / "clean")[0] == (tmp_path / "raw/audio/a.wav").resolve()
