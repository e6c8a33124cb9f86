"""End to end: feature kinds, pad modes, normalisations and crops through `dvc exp run`.

One tiny project (cnn1d only, 2 epochs, 8 kHz clips); each case is one `dvc exp run -S ...`
of the stages up to `evaluate@cnn1d`. Together with the default run the cases cover every
`pad_mode` and `normalize` value, the raw waveform and a stack with crops; every `kind`
(and beat-synchronous frames) trains in tests/unit/test_frontends.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

COPY = ["dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore", "src", "stages"]
TINY = {
    "data": {"synthetic": {"n_curated": 20, "n_noisy": 20, "n_test": 12, "sample_rate": 8000,
                           "min_seconds": 0.5, "max_seconds": 2.0, "num_classes": 6}},
    "features": {"sample_rate": 8000, "n_fft": 256, "hop_length": 128, "n_mels": 32,
                 "fmax": 4000.0, "clip_seconds": 1.0, "n_mfcc": 13},
    "train": {"models": ["cnn1d"], "epochs": 2, "batch_size": 8},
}
CASES = {
    "stft-zeros-minmax": ["features.kind=stft", "features.pad_mode=zeros",
                          "features.normalize=minmax"],
    "stack-mirror-none-crops": ["features.kind=logmel+chroma", "features.pad_mode=mirror",
                                "features.normalize=none", "features.crops_per_clip=2",
                                "features.eval_crops=3"],
    "waveform-reflect": ["features.kind=waveform", "features.pad_mode=reflect"],
}


def _merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        base[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return base


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(cwd / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def project(repo_root, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("features_project")
    for name in COPY:
        src = repo_root / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, root / name)
    params = _merge(yaml.safe_load((root / "params.yaml").read_text()), TINY)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"],
                ["dvc", "config", "core.analytics", "false"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "init"], ["dvc", "repro", "evaluate@cnn1d"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "baseline"]):
        run(cmd, root)
    return root


def _check(root: Path, kind: str) -> None:
    metrics = json.loads((root / "metrics/cnn1d.json").read_text())
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
