"""The real `dvc` CLI on the first stages: check_params (issue 16 item 5) and the files a
`folder` source reads being DVC dependencies (item 1). Only `download` and what it needs
run, so each test takes seconds, not minutes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import yaml
from dvc_project import commit, make_project, run

pytestmark = pytest.mark.e2e


def _edit_params(root, edit) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    edit(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _stale(root) -> set[str]:
    return set(json.loads(run(["dvc", "status", "download", "--with-deps", "--json"],
                              root).stdout))


@pytest.fixture(scope="module")
def synthetic(repo_root, tmp_path_factory):
    """The default dataset, tiny, with `download` (and what it needs) reproduced."""
    root = make_project(repo_root, tmp_path_factory.mktemp("synthetic"))
    run(["dvc", "repro", "download"], root)
    commit(root, "download")
    return root


def test_default_params_leave_no_stage_always_changed(synthetic):
    assert _stale(synthetic) == set()


def test_an_unrelated_change_reruns_check_params_only(synthetic):
    _edit_params(synthetic, lambda p: p["train"].update(lr=0.0123))
    try:
        assert _stale(synthetic) == {"check_params"}
        out = run(["dvc", "repro", "download"], synthetic).stdout
        assert "Running stage 'check_params'" in out
        assert "Running stage 'download'" not in out
        assert _stale(synthetic) == set()
    finally:
        run(["git", "checkout", "params.yaml"], synthetic)
        run(["dvc", "repro", "download"], synthetic)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["train"].update(epochz=3),
     "train.epochz: unknown key; did you mean train.epochs?"),
    (lambda p: p.update(trian={"epochs": 3}), "trian: unknown key; did you mean train?"),
    (lambda p: p["train"].update(models=["cnn2d", "cnn3d"]),
     "train.models[1]: unknown model 'cnn3d'; did you mean cnn"),
])
def test_a_bad_key_added_to_an_up_to_date_pipeline_stops_repro_first(synthetic, edit, message):
    _edit_params(synthetic, edit)
    try:
        result = run(["dvc", "repro"], synthetic, check=False)
        assert result.returncode != 0
        assert message in result.stdout + result.stderr
        assert "Running stage 'download'" not in result.stdout
        assert "Running stage 'clean_labels'" not in result.stdout
    finally:
        run(["git", "checkout", "params.yaml"], synthetic)


def _wav(path, seed) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(4000) / 8000
    sf.write(path, (0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t)
                    + 0.05 * rng.standard_normal(t.size)).astype(np.float32), 8000)


def test_editing_a_folder_input_makes_download_stale(repo_root, tmp_path):
    audio, csv = tmp_path / "my_audio", tmp_path / "my_labels.csv"  # outside the repo
    audio.mkdir()
    rows = ["fname,labels"]
    for i in range(10):
        _wav(audio / f"c{i}.wav", i)
        rows.append(f"c{i}.wav,{'dog' if i % 2 else 'cat'}")
    csv.write_text("\n".join(rows) + "\n")
    data = {"dataset": "folder", "folder": {"audio_dir": str(audio), "csv": str(csv)},
            "inputs": {"audio": str(audio), "labels": str(csv)}}
    root = make_project(repo_root, tmp_path / "project", {"data": data})
    out = run(["dvc", "repro", "download"], root).stdout
    assert "Running stage 'input@labels'" in out and "Running stage 'download'" in out
    assert _stale(root) == set()

    csv.write_text(csv.read_text().replace("c3.wav,dog", "c3.wav,cat"))  # one label
    assert "input@labels" in _stale(root)
    assert "Running stage 'download'" in run(["dvc", "repro", "download"], root).stdout
    manifest = (root / "data/raw/manifest.csv").read_text()
    assert "c3" in manifest and _stale(root) == set()

    _wav(audio / "c5.wav", 99)  # overwrite one clip
    assert "input@audio" in _stale(root)
    assert "Running stage 'download'" in run(["dvc", "repro", "download"], root).stdout
    assert _stale(root) == set()
