"""The whole-file validation of stage check_params (issue 16 item 5)."""

from __future__ import annotations

import pytest
import yaml

from audiotag.core.errors import ParamsError
from audiotag.params_check import check_params


@pytest.fixture
def params(repo_root, tmp_path):
    """Write the repository's params.yaml with ``edit`` applied; return its path."""
    def write(edit) -> str:
        raw = yaml.safe_load((repo_root / "params.yaml").read_text())
        edit(raw)
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return str(path)
    return write


def test_the_repository_params_pass(repo_root):
    check_params(repo_root / "params.yaml")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["train"].update(epochz=3), r"train\.epochz: unknown key; did you mean "
                                            r"train\.epochs\?"),
    (lambda p: p.update(trian={"lr": 1}), r"trian: unknown key; did you mean train\?"),
    (lambda p: p["features"].update(n_mel=32), r"features\.n_mel: unknown key; did you mean "
                                               r"features\.n_mels\?"),
    (lambda p: p["models"]["cnn2d"].update(chanels=[8]), r"models\.cnn2d\.chanels: unknown "
                                                         r"parameter \(did you mean 'channels'"),
    (lambda p: p["data"]["fsdd"].update(locl_dir="x"), r"data\.fsdd\.locl_dir: unknown key; "
                                                       r"did you mean data\.fsdd\.local_dir\?"),
    (lambda p: p["weights"].update(hist_bin=3), r"weights\.hist_bin: unknown key"),
    (lambda p: p["models"]["crnn"].update(train={"epochz": 3}),
     r"models\.crnn\.train\.epochz: unknown key; did you mean models\.crnn\.train\.epochs\?"),
])
def test_a_misspelt_key_anywhere_names_it_and_suggests_the_close_match(params, edit, message):
    with pytest.raises(ParamsError, match=message):
        check_params(params(edit))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["train"].update(models=["cnn2d", "cnn3d"]),
     r"train\.models\[1\]: unknown model 'cnn3d'; did you mean cnn"),
    (lambda p: p["train"].update(models=[]), r"train\.models: List should have at least 1"),
    (lambda p: p["train"].update(epochs=-1), r"train\.epochs: .*greater than or equal to 1"),
    (lambda p: p["train"].update(epochs=True), r"train\.epochs: .*not a boolean"),
    (lambda p: p["models"]["crnn"].update(gru_layers=0), r"models\.crnn\.gru_layers"),
    (lambda p: p["features"].update(fmax=99999.0), r"features: .*fmax"),
    (lambda p: p["clean"].update(method="magic"), r"clean\.method"),
    (lambda p: p["split"].update(valid_fold=-1), r"split\.valid_fold"),
    (lambda p: p.update(seed=-3), r"seed: expected a non-negative integer"),
    (lambda p: p["models"]["cnn1d"].update(train={"lr": -1}),
     r"models\.cnn1d\.train\.lr: .*greater than 0"),
])
def test_errors_of_every_group_are_caught_by_the_whole_file_check(params, edit, message):
    # these used to surface only in train/report, after download, cleaning and features
    with pytest.raises(ParamsError, match=message):
        check_params(params(edit))


def test_every_problem_is_listed_at_once(params):
    def edit(p):
        p["train"]["epochz"] = 3
        p["evaluate"]["batch_size"] = 0
    with pytest.raises(ParamsError) as err:
        check_params(params(edit))
    assert "train.epochz" in str(err.value) and "evaluate.batch_size" in str(err.value)


def test_an_unused_source_keeps_its_settings_but_not_a_misspelt_key(params):
    # the folder source needs both paths only when chosen
    check_params(params(lambda p: p["data"]["folder"].update(audio_dir=None)))
    with pytest.raises(ParamsError, match=r"data\.gtzan\.ulr: unknown key; did you mean "
                                          r"data\.gtzan\.url\?"):
        check_params(params(lambda p: p["data"]["gtzan"].update(ulr="x")))


def test_a_source_path_must_be_a_tracked_input(params, tmp_path):
    audio, csv = tmp_path / "audio", tmp_path / "labels.csv"

    def folder(inputs):
        def edit(p):
            p["data"].update(dataset="folder", inputs=inputs)
            p["data"]["folder"].update(audio_dir=str(audio), csv=str(csv))
        return params(edit)

    with pytest.raises(ParamsError, match=r"data\.folder\.audio_dir: .*audio is not in "
                                          r"data\.inputs, so DVC would not see it change"):
        check_params(folder({}))
    with pytest.raises(ParamsError, match=r"data\.folder\.csv: .*labels\.csv is not in"):
        check_params(folder({"audio": str(audio)}))
    check_params(folder({"audio": str(audio), "labels": str(csv)}))
    check_params(folder({"all": str(tmp_path)}))  # a folder holding both covers both
    with pytest.raises(ParamsError, match=r"data\.inputs\.a b: a name of letters"):
        check_params(folder({"a b": str(tmp_path)}))


def test_fingerprint_changes_with_content_not_location(tmp_path):
    from audiotag.data.inputs import fingerprint

    for root in (tmp_path / "a", tmp_path / "b"):
        (root / "sub").mkdir(parents=True)
        (root / "labels.csv").write_text("fname,labels\nsub/x.wav,dog\n")
        (root / "sub" / "x.wav").write_bytes(b"RIFF0")
    first = fingerprint(tmp_path / "a")
    assert first == fingerprint(tmp_path / "b") and first["files"] == 2
    (tmp_path / "b" / "labels.csv").write_text("fname,labels\nsub/x.wav,cat\n")
    assert fingerprint(tmp_path / "b") != first
    assert fingerprint(tmp_path / "a" / "labels.csv") != fingerprint(tmp_path / "b/labels.csv")


def test_fingerprint_looks_through_symlinks_and_stops_at_cycles(tmp_path):
    # issue 33 item 1: a clip reached through a symlinked folder was invisible to it
    from audiotag.data.inputs import fingerprint

    (tmp_path / "audio" / "own").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "audio" / "own" / "a.wav").write_bytes(b"RIFF-a")
    (tmp_path / "elsewhere" / "b.wav").write_bytes(b"RIFF-b")
    (tmp_path / "elsewhere" / "c.wav").write_bytes(b"RIFF-c")
    (tmp_path / "audio" / "linked").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "audio" / "one.wav").symlink_to(tmp_path / "elsewhere" / "c.wav")
    (tmp_path / "audio" / "own" / "loop").symlink_to(tmp_path / "audio")  # a cycle
    first = fingerprint(tmp_path / "audio")
    assert first["files"] == 4  # own/a, linked/b, linked/c, one.wav; the loop once only
    (tmp_path / "elsewhere" / "b.wav").write_bytes(b"RIFF-B")  # overwritten through the link
    assert fingerprint(tmp_path / "audio") != first


def test_a_symlinked_folder_in_an_input_must_itself_be_an_input(params, tmp_path):
    # DVC does not look into a symlinked folder, so only an input of its own makes a change
    # there re-run download (issue 33 item 1)
    audio, other = tmp_path / "audio", tmp_path / "elsewhere"
    audio.mkdir()
    other.mkdir()
    (audio / "linked").symlink_to(other)
    (audio / "loop").symlink_to(audio)  # inside the input already: fine

    def folder(inputs):
        def edit(p):
            p["data"].update(dataset="folder", inputs=inputs)
            p["data"]["folder"].update(audio_dir=str(audio), csv=str(audio / "labels.csv"))
        return params(edit)

    with pytest.raises(ParamsError, match=r"data\.inputs\.audio: .*audio/linked is a symlink "
                                          r"to the folder .*elsewhere, which DVC does not look "
                                          r"into; add it to data\.inputs"):
        check_params(folder({"audio": str(audio)}))
    check_params(folder({"audio": str(audio), "other": str(other)}))


def test_oracle_cleaning_with_the_folder_source_needs_a_true_labels_column(params, tmp_path):
    # issue 31: folder data may carry the true labels (a CSV column), so oracle is allowed
    audio, csv = tmp_path / "audio", tmp_path / "labels.csv"
    audio.mkdir()

    def folder(header):
        csv.write_text(header + "\n")
        def edit(p):
            p["data"].update(dataset="folder", inputs={"audio": str(audio), "csv": str(csv)})
            p["data"]["folder"].update(audio_dir=str(audio), csv=str(csv))
            p["clean"].update(method="oracle")
        return params(edit)

    check_params(folder("fname,labels,subset,true_labels"))
    with pytest.raises(ParamsError, match=r"clean\.method: oracle needs the true labels of the "
                                          r"noisy clips: add a true_labels column to "
                                          r"data\.folder\.csv \(.*labels\.csv; it has fname, "
                                          r"labels, subset\)"):
        check_params(folder("fname,labels,subset"))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["train"].update(lr=float("inf")), r"train\.lr: .*finite"),
    (lambda p: p["features"].update(fmin=float("nan")), r"features\.fmin: .*finite"),
    (lambda p: p["split"].update(valid_fold=7),
     r"split\.valid_fold: 7 is not a fold of data\.synthetic \(n_folds: 5"),
    (lambda p: p["features"].update(n_fft=16, n_mels=64),
     r"features: .*n_fft=16 gives 9 frequency bins, too few for n_mels=64: empty mel filters"),
    (lambda p: p["features"].update(clip_seconds=0.001),
     r"features: .*clip_seconds=0\.001 s is shorter than one frame"),
    (lambda p: p["features"].update(pca=65), r"features: .*pca=65 components of 64 bands"),
    (lambda p: p["features"].update(normalize_parts=["standard", "none"]),
     r"features: .*normalize_parts: 2 value\(s\) for kind=logmel of 1 part"),
    (lambda p: (p["features"].update(pca=8), p["train"].update(aug_gain_db=6)),
     r"features\.pca: not with train\.aug_gain_db"),
    (lambda p: (p["data"].update(dataset="fsdd"), p["clean"].update(method="oracle")),
     r"clean\.method: oracle needs the true labels .*data\.dataset: fsdd"),
    # item 10: DDP split 16 over 3 processes as 5 each, a global batch of 15
    (lambda p: p["train"].update(batch_size=16, processes=3),
     r"train: .*train\.batch_size \(16\) is not divisible by train\.processes x train\.nodes "
     r"\(3\)"),
    (lambda p: p["models"]["cnn1d"].update(train={"batch_size": 10, "nodes": 4,
                                                  "rdzv_endpoint": "h:1"}),
     r"models\.cnn1d\.train: .*batch_size \(10\) is not divisible"),
])
def test_late_errors_are_caught_by_check_params(params, edit, message):
    # issue 33 item 6: these failed in a later stage, or as a traceback
    with pytest.raises(ParamsError, match=message):
        check_params(params(edit))


def test_a_duplicate_key_in_params_yaml_is_refused_naming_it_and_its_line(repo_root, tmp_path):
    # issue 33 item 6: DVC refuses duplicate keys, check_params kept the last one
    lines = (repo_root / "params.yaml").read_text().splitlines()
    at = lines.index(next(line for line in lines if line.startswith("train:")))
    lines.insert(at + 1, "  lr: 0.5")
    path = tmp_path / "params.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ParamsError, match=r"params\.yaml: line \d+: train\.lr: a duplicate key "
                                          rf"\(first at line {at + 2}\)"):
        check_params(path)
