"""A run of 3 models (issue 18; the shared tiny project plus cnn2d, so only cnn2d trains):
`dvc metrics show` holds only headline numbers, each model's test and validation lwlrap
(issue 29: `dvc exp show` fits 200 columns); everything else lives in plain outs or plots,
and `dvc plots show` has at most 30 plots, the top-level ones overlaying the models."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml
from dvc_project import run

pytestmark = pytest.mark.e2e
MODELS = ["cnn2d", "cnn1d", "crnn"]
ENSEMBLES = ["ensemble"]  # the default ensembles (params.yaml)


def numbers(value) -> int:
    """How many numbers a metrics value holds (nested dicts and lists included)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return 1
    if isinstance(value, dict):
        return sum(numbers(v) for v in value.values())
    if isinstance(value, list):
        return sum(numbers(v) for v in value)
    return 0


@pytest.fixture(scope="module")
def project(project_copy):
    root = project_copy("headline")
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert set(params["train"]["models"]) < set(MODELS)  # the default models, and one more
    params["train"]["models"] = MODELS
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], root)
    return root


def test_metrics_show_is_headline_numbers_only(project):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    (workspace,) = shown.values()  # one revision: the workspace ("" in DVC 3.x's JSON)
    files = workspace["data"]
    per_owner: Counter[str] = Counter()
    owners = MODELS + ENSEMBLES  # an ensemble's headline is a model's
    for path, entry in files.items():
        owner = next((m for m in owners if m in path.replace("\\", "/").split("/")
                      or path.endswith(f"/{m}.json")), "other")
        per_owner[owner] += numbers(entry.get("data", {}))
    assert set(per_owner) >= set(owners), per_owner
    for model in owners:
        assert per_owner[model] <= 10, (model, per_owner, sorted(files))
    assert per_owner["other"] <= 10, (per_owner, sorted(files))
    # the headline a researcher looks for first, under the model's name (dvc exp show's
    # column <model>.lwlrap): test and validation lwlrap; nothing else, no timings
    for model in MODELS:
        head = files[f"metrics/{model}.json"]["data"]
        assert list(head) == [model] and list(head[model]) == ["lwlrap", "valid_lwlrap"]
    assert list(files["metrics/ensemble.json"]["data"]["ensemble"]) == ["lwlrap"]
    assert not any("labels" in path or "timings" in path for path in files)
    # the details moved out of `metrics:` are still written (plain outs), the CI with them
    details = json.loads((project / "metrics/details/cnn2d.json").read_text())
    assert {"per_class", "overfit", "mAP", "best_epoch", "platform"} <= set(details)
    assert details["lwlrap_ci_low"] <= details["lwlrap"] <= details["lwlrap_ci_high"]
    timings = json.loads((project / "metrics/timings/train/cnn2d.json").read_text())
    assert timings["train_seconds"] > 0
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert "metrics/details/cnn2d.json" in [o["path"] for o in
                                            lock["stages"]["evaluate@cnn2d"]["outs"]]


def _model_rows(spec: dict) -> list[dict]:
    """The rows DVC filled into a rendered template: the top-level data, or a layer's (the
    scatter keeps its diagonal's own data in the first layer)."""
    if "values" in spec.get("data", {}):
        return spec["data"]["values"]
    return next(layer["data"]["values"] for layer in spec["layer"]
                if any("model" in row for row in layer.get("data", {}).get("values", [])))


def test_plots_overlay_the_models_and_stay_few(project):
    """At most 30 plots for 3 models; the top-level ones hold every model in one chart,
    titled in words with units on the axes."""
    shown = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)
    assert not shown.get("errors"), shown.get("errors")
    plots = shown["data"]  # plot -> rendered entries (none for a header-only CSV)
    assert len(plots) <= 30, sorted(plots)
    assert not any("grad_norm/" in name for name in plots)  # one heatmap image per model
    assert sum(name.endswith("grad_norms.png") for name in plots) == len(MODELS)
    for name in ("plots/models/valid_lwlrap.csv", "plots/models/loss.csv",
                 "plots/models/per_class_lwlrap.csv", "plots/models/curated_vs_noisy.csv"):
        (entry,) = plots[name]
        spec = entry["content"]
        values = _model_rows(spec)
        # the training curves are the models'; the test's per-class lwlrap has the ensembles
        expected = MODELS + (ENSEMBLES if name.endswith("per_class_lwlrap.csv") else [])
        assert {row["model"] for row in values} == set(expected), name
        title = spec["title"]["text"]
        assert "/" not in title and len(title.split()) >= 4, title
    loss = _model_rows(plots["plots/models/loss.csv"][0]["content"])
    assert {row["curve"] for row in loss} == {"train loss", "validation loss"}
    scatter = plots["plots/models/curated_vs_noisy.csv"][0]["content"]
    # the diagonal (its own data), then the classes and their labels over the models' rows
    diagonal, classes = scatter["layer"]
    assert diagonal["mark"]["type"] == "line"
    assert [layer["mark"]["type"] for layer in classes["layer"]] == ["point", "text"]
    assert classes["layer"][1]["encoding"]["text"]["field"] == "class"
    assert "(0-1)" in scatter["layer"][0]["encoding"]["x"]["title"]
