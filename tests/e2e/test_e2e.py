"""End to end with the real `dvc` CLI on a copy of this repository and tiny params."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc_outputs import misplaced_outs
from dvc_project import run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(project_copy) -> Path:
    """A git + DVC repo copied from this one, tiny params, after one `dvc repro`."""
    return project_copy("project")


def _models(root: Path) -> list[str]:
    return yaml.safe_load((root / "params.yaml").read_text())["train"]["models"]


def test_repro_writes_sane_metrics_for_every_model(project):
    models = _models(project)
    assert len(models) >= 2  # the default train.models: cnn1d, crnn
    for name in models:
        metrics = json.loads((project / "metrics/details" / f"{name}.json").read_text())
        assert 0.0 < metrics["lwlrap"] <= 1.0
        assert metrics["n_test_clips"] == 12
        train = json.loads((project / "metrics/train" / name / "metrics.json").read_text())
        assert train["step"] == 2 and 0.0 < train["valid"]["lwlrap"] <= 1.0
        curves = project / "metrics/train" / name / "plots/metrics"
        assert len(list((curves / "grad_norm").glob("*.tsv"))) >= 3, "per-layer grad norms"
        assert "grad_norm" not in train  # kept out of the `dvc exp show` columns
        weights = json.loads((project / "metrics/weights" / f"{name}.json").read_text())
        assert weights["summary"]["n_parameters"] == metrics["n_parameters"] > 0
        per_class = (project / "plots" / name / "per_class_lwlrap.csv").read_text()
        assert per_class.startswith("class,lwlrap")
        for png in ("histograms.png", "grad_norms.png"):
            assert (project / "plots/weights" / name / png).stat().st_size > 1000
        assert (project / "models" / name / "model.pt").exists()
    summary = (project / "reports/summary.md").read_text()
    assert all(f"| {name} |" in summary for name in models)
    assert (project / "plots/leaderboard.png").exists()
    labels = json.loads((project / "metrics/details/labels.json").read_text())
    assert labels["clips"] == {"curated": 20, "noisy": 20, "test": 12}


def test_second_repro_does_nothing(project):
    out = run(["dvc", "repro"], project).stdout
    assert "Running stage" not in out
    assert "up to date" in run(["dvc", "status"], project).stdout


def test_every_file_the_stages_write_is_a_declared_output(project):
    # a file DVC does not know is neither cached nor pushed: each one under the output dirs
    # is an out/metric/plot of a stage (as resolved in dvc.lock), or a file git tracks
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    declared = [out["path"] for stage in lock["stages"].values()
                for out in stage.get("outs", [])]
    tracked = set(run(["git", "ls-files"], project).stdout.split())
    undeclared = []
    for top in ("data", "models", "metrics", "plots", "reports", "checkpoints", "predictions",
                "ensembles"):
        for path in (project / top).rglob("*"):
            rel = path.relative_to(project).as_posix()
            if path.is_file() and rel not in tracked and path.name != ".gitignore" and not any(
                    rel == out or rel.startswith(out.rstrip("/") + "/") for out in declared):
                undeclared.append(rel)
    assert not undeclared, f"written by a stage but not declared in dvc.yaml: {undeclared}"


def test_every_output_travels_in_git_or_the_dvc_remote(project):
    """Issue 29: in a project made of this repository's own files (its committed nested
    .gitignore files included), git would commit every `cache: false` out the tiny run wrote
    and ignores every cached one (what `dvc push` carries): nothing is left behind."""
    problems = misplaced_outs(project)
    assert not problems, "\n".join(problems)


def test_experiment_reruns_training_but_not_features(project):
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline"], project)
    # up to evaluation: the weights, ensemble and report stages are not what this checks
    targets = [f"evaluate@{name}" for name in _models(project)]
    out = run(["dvc", "exp", "run", "-S", "train.lr=0.005", *targets], project).stdout
    assert "Running stage 'train@" in out
    for stage in ("download", "clean_labels", "features"):
        assert f"Running stage '{stage}'" not in out
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    runs = [r for e in exps for r in e.get("revs", [])]
    changed = [r for r in runs
               if r["data"]["params"]["params.yaml"]["data"]["train"]["lr"] == 0.005]
    assert changed, "the experiment and its changed param appear in dvc exp show"
    metrics = changed[0]["data"]["metrics"]
    for name in _models(project):  # the headline under the model's name: column <name>.lwlrap
        assert 0.0 < metrics[f"metrics/{name}.json"]["data"][name]["lwlrap"] <= 1.0
    assert "metrics/labels.json" not in metrics  # label cleaning's figures: its own page


def test_exp_show_fits_200_columns_with_every_models_lwlrap(project):
    """The lab notebook is readable (issue 29): after the experiment above, `dvc exp show
    --only-changed` at 200 columns shows the experiment, the changed param and every
    model's test lwlrap in full; DVC folds only the hashes of intermediate outputs into
    `…`, and the README's --drop recipe leaves none."""
    env = {**os.environ, "COLUMNS": "200", "PATH": f"{Path(sys.executable).parent}:"
           f"{os.environ['PATH']}"}

    def show(*extra: str) -> list[str]:
        out = subprocess.run(["dvc", "exp", "show", "--only-changed", "--no-pager", *extra],
                             cwd=project, env=env, capture_output=True, text=True, check=True)
        return out.stdout.splitlines()

    lines = show()
    assert max(len(line) for line in lines) <= 200, "\n".join(lines)
    header = lines[1].split()
    for name in _models(project):
        assert f"{name}.lwlrap" in header, lines[1]
    assert "train.lr" in header and "0.005" in "\n".join(lines)
    column = {name: lines[1].index(f"{name}.lwlrap") for name in _models(project)}
    for line in lines[3:]:  # the rows: no value of a lwlrap column folded
        for name, start in column.items():
            assert "…" not in line[start - 2:start + len(name) + 8], line
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    drop = next(line for line in readme.splitlines() if "--only-changed --drop" in line)
    recipe = drop.split("--drop ", 1)[1].split("'")[1]
    clean = show("--drop", recipe)
    assert "…" not in "\n".join(clean) and max(len(line) for line in clean) <= 200, \
        "\n".join(clean)


def test_editing_a_model_reruns_training_only(project):
    model = _models(project)[0]
    model_file = project / f"src/audiotag/models/{model}.py"
    original = model_file.read_text()
    try:
        model_file.write_text(original + "\n# a comment changes the file's hash\n")
        status = run(["dvc", "status", "--json"], project).stdout
        changed = set(json.loads(status))
        assert {f"train@{model}", f"evaluate@{model}"} <= changed
        # clean_labels re-runs too: its detector is a registered model (clean.detector.model)
        assert not changed & {"download", "features"}
    finally:
        model_file.write_text(original)


def test_editing_the_shared_model_defaults_reruns_every_training(project):
    """models.defaults (issue 22) sits under every models.<name>: editing it re-runs each
    train@ (and the detector's clean_labels), not download or features."""
    params_file = project / "params.yaml"
    original = params_file.read_text()
    try:
        params = yaml.safe_load(original)
        params["models"]["defaults"]["dropout"] = 0.3
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        changed = set(json.loads(run(["dvc", "status", "--json"], project).stdout))
        assert {f"train@{name}" for name in _models(project)} | {"clean_labels"} <= changed
        assert not changed & {"download", "features"}
    finally:
        params_file.write_text(original)


def test_editing_clean_params_reruns_cleaning_and_training_not_features(project):
    """Cleaning reads the feature store; its labels file is what training depends on."""
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "baseline", "--allow-empty"], project)
    model = _models(project)[0]  # one training shows the labels file reaches training
    out = run(["dvc", "exp", "run", "-S", "clean.method=oracle", "-S", "clean.action=drop",
               f"train@{model}"], project).stdout
    assert "Running stage 'clean_labels'" in out
    for stage in ("download", "features"):
        assert f"Running stage '{stage}'" not in out
    assert "Running stage 'train@" in out  # the labels file changed: the noisy flips dropped
    labels = json.loads((project / "metrics/labels.json").read_text())
    assert labels["detection_precision"] == 1.0 and labels["noise_rate_after"] == 0.0


def test_bad_params_stop_the_stage_before_any_output(project, tmp_path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["lr"] = -0.1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(params))
    out = tmp_path / "model_out"
    result = run([sys.executable, "stages/train.py", "--model", "cnn2d", "--features",
                  "data/features", "--out", str(out), "--live", str(tmp_path / "live"),
                  "--params", str(bad)], project, check=False)
    assert result.returncode == 2
    assert "train.lr" in result.stderr and "greater than 0" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not (tmp_path / "live").exists()


def test_a_killed_training_resumes_on_the_next_repro(project):
    """Kill `dvc repro` (the whole process group, as Ctrl-C or a lost machine would) in the
    middle of training; checkpoints/<model> is a persist out, so the next repro continues
    from the last finished epoch instead of starting again."""
    import signal
    import time

    import torch

    params_path = project / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    params["train"].update({"epochs": 12, "patience": 100})
    state = project / "checkpoints/cnn1d/last.pt"
    try:
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        env = {**os.environ, "PYTHONPATH": str(project / "src"), "DVC_NO_ANALYTICS": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        proc = subprocess.Popen(["dvc", "repro", "-s", "train@cnn1d"], cwd=project, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        done_epochs, deadline = 0, time.monotonic() + 600
        while done_epochs < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                saved = torch.load(state, weights_only=True)
                done_epochs = 0 if saved["complete"] else len(saved["state"]["history"])
            except Exception:  # not written yet, or from the earlier complete run
                continue
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert 2 <= done_epochs < 12, "the run was killed in the middle of training"
        assert not (project / "models/cnn1d/model.pt").exists()  # nothing looks complete
        out = run(["dvc", "repro", "-s", "train@cnn1d"], project)
        assert "resuming after epoch" in out.stderr + out.stdout
        summary = json.loads((project / "metrics/train/cnn1d/metrics.json").read_text())
        assert summary["epochs_run"] == 12 and summary["step"] == 12
        assert torch.load(state, weights_only=True)["complete"] is True
    finally:
        params_path.write_text(original)
        run(["dvc", "repro"], project)
