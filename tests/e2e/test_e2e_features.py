"""End to end: feature kinds, pad modes, normalisations and crops through `dvc exp run`.

The shared tiny project (tests/e2e/conftest.py: 2 epochs, 8 kHz clips); each case is one
`dvc exp run -S ...` of the stages up to `evaluate@cnn1d`: a stack with crops, and the raw
waveform. Every `kind` (and beat-synchronous frames) trains in tests/unit/test_frontends.py,
with every `normalize` value; every `pad_mode` is checked in tests/unit/test_audio.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from dvc_project import commit, run

pytestmark = pytest.mark.e2e

CASES = {
    "stack-mirror-minmax-crops": ["features.kind=logmel+chroma", "features.pad_mode=mirror",
                                  "features.normalize=minmax", "features.crops_per_clip=2",
                                  "features.eval_crops=3"],
    "waveform-reflect": ["features.kind=waveform", "features.pad_mode=reflect"],
}


@pytest.fixture(scope="module")
def project(project_copy) -> Path:
    root = project_copy("features_project")
    commit(root, "baseline")
    return root


def _check(root: Path, kind: str) -> None:
    metrics = json.loads((root / "metrics/details/cnn1d.json").read_text())
    assert 0.0 < metrics["lwlrap"] <= 1.0 and metrics["n_test_clips"] == 12
    assert json.loads((root / "data/features/features.json").read_text())["kind"] == kind


def test_default_features(project):
    _check(project, "logmel")


@pytest.mark.parametrize("case", list(CASES))
def test_feature_settings_run_through_dvc(project, case):
    # each case starts from the committed params (an exp run leaves its params behind)
    run(["git", "checkout", "-q", "--", "params.yaml"], project)
    sets = [arg for setting in CASES[case] for arg in ("-S", setting)]
    out = run(["dvc", "exp", "run", *sets, "evaluate@cnn1d"], project).stdout
    assert "Running stage 'features'" in out and "Running stage 'train@cnn1d'" in out
    _check(project, CASES[case][0].split("=", 1)[1])


def test_a_2d_model_on_raw_waveforms_stops_with_the_key(project, tmp_path):
    """After the waveform case: train@cnn2d on that store stops before writing anything."""
    if json.loads((project / "data/features/features.json").read_text())["kind"] != "waveform":
        test_feature_settings_run_through_dvc(project, "waveform-reflect")  # run alone
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["models"] = ["cnn2d"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    result = run([sys.executable, "stages/train.py", "--model", "cnn2d", "--features",
                  "data/features", "--out", str(tmp_path / "m"), "--live", str(tmp_path / "l"),
                  "--params", str(tmp_path / "p.yaml")], project, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "features.kind=waveform" in result.stderr and "'cnn2d'" in result.stderr
    assert not (tmp_path / "m").exists()
