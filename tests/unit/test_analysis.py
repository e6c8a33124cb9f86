import json

import pandas as pd
import pytest
import torch

from audiotag.analysis.report import noisy_label_suspects, write_report
from audiotag.analysis.weights import (
    gradient_matrix,
    parameter_stats,
    plot_gradient_heatmap,
    weight_summary,
)

HISTORY = {"epochs": [
    {"epoch": 1, "grad_norms": {"conv": 0.5, "fc": 1.0}},
    {"epoch": 2, "grad_norms": {"conv": 0.01, "fc": 2.0}},
]}


def test_parameter_stats_on_known_weights():
    layer = torch.nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 0.0], [0.0, -4.0]]))
        layer.bias.copy_(torch.tensor([0.0005, 1.0]))
    stats = {r["name"]: r for r in parameter_stats(layer, near_zero=1e-3)}
    assert stats["weight"]["l2"] == pytest.approx(5.0)
    assert stats["weight"]["mean"] == pytest.approx(-0.25)
    assert stats["weight"]["frac_near_zero"] == pytest.approx(0.5)
    assert stats["bias"]["frac_near_zero"] == pytest.approx(0.5)
    summary = weight_summary(list(stats.values()), HISTORY)
    assert summary["n_parameters"] == 6
    assert summary["frac_near_zero"] == pytest.approx(3 / 6)
    # median over epochs of first/last: epoch 1 0.5 / 1.0, epoch 2 0.01 / 2.0
    assert summary["grad_ratio_first_last"] == pytest.approx((0.5 + 0.005) / 2)
    assert summary["grad_norm_max"] == 2.0


def test_gradient_heatmap(tmp_path):
    layers, matrix = gradient_matrix(HISTORY)
    assert layers == ["conv", "fc"] and matrix.tolist() == [[0.5, 0.01], [1.0, 2.0]]
    plot_gradient_heatmap(HISTORY, tmp_path / "g.png", "title")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _metrics(root, name, score, ci=0.05, **extra):
    (root / "train" / name).mkdir(parents=True)
    (root / "weights").mkdir(exist_ok=True)
    (root / "details").mkdir(exist_ok=True)
    per_class = [{"class": c, "lwlrap": v, "ap": v, "f1": v, "positives": 3}
                 for c, v in zip("xyz", (score, score / 2, 1.0), strict=True)]
    (root / "details" / f"{name}.json").write_text(json.dumps({
        "lwlrap": score, "lwlrap_ci_low": score - ci, "lwlrap_ci_high": score + ci,
        "valid_lwlrap": score, "best_epoch": 3, "n_parameters": 1000, "per_class": per_class,
        "overfit": {"lwlrap_gap": -0.07 if name == "a" else 0.02}, **extra}))
    (root / "train" / name / "metrics.json").write_text(json.dumps({"epochs_run": 4}))
    for stage, times in (("train", {"train_seconds": 12.0, "epoch_seconds": [3.0, 2.0, 4.0],
                                    "device": "cpu"}),
                         ("evaluate", {"inference_ms_per_clip": 2.0 if name == "a" else 3.0})):
        (root / "timings" / stage).mkdir(parents=True, exist_ok=True)
        (root / "timings" / stage / f"{name}.json").write_text(json.dumps(times))
    (root / "weights" / f"{name}.json").write_text(json.dumps(
        {"summary": {"verdict": "vanishing" if name == "a" else "healthy",
                     "grad_ratio_first_last": 1e-7 if name == "a" else 0.5},
         "verdict_reasons": ["first/last gradient ratio 1e-07 < 0.001"]}))


# curated vs noisy lwlrap per class: every class loses a little on its noisy clips, Zipper
# far more than the others
SUBSETS = [{"class": c, "curated": 0.9, "noisy": 0.9 - gap}
           for c, gap in (("w", 0.05), ("x", 0.04), ("y", 0.06), ("Zipper", 0.7))]


def test_noisy_label_suspects_are_the_classes_beyond_the_cutoff():
    suspects, cut = noisy_label_suspects(SUBSETS, spread=2.0)
    assert [s["class"] for s in suspects] == ["Zipper"]
    # median gap 0.055, robust SD 1.4826 x median(|gap - 0.055|) = 1.4826 x 0.01
    assert cut["median"] == pytest.approx(0.055) and cut["sd"] == pytest.approx(0.014826)
    assert cut["cutoff"] == pytest.approx(0.055 + 2 * 0.014826)
    assert noisy_label_suspects(SUBSETS, spread=100.0)[0] == []  # nothing stands out
    assert len(noisy_label_suspects(SUBSETS, spread=0.0)[0]) == 2  # above the median


def test_report_marks_the_best_model(tmp_path):
    metrics = tmp_path / "metrics"
    _metrics(metrics, "a", 0.5)
    _metrics(metrics, "b", 0.75, lwlrap_by_subset_per_class=SUBSETS)
    text = write_report(["a", "b"], metrics, tmp_path / "r/summary.md", tmp_path / "p/lb.png",
                        timings_path=tmp_path / "r/timings.md")
    # b's CI [0.70, 0.80] lies above a's [0.45, 0.55]: a finding, in bold
    assert "| a | 0.5000 | [0.450, 0.550] |" in text and "| b | **0.7500** |" in text
    assert text.count("**") == 2  # nothing else ranked: not sizes or gaps
    # wall-clock times: a page of their own, linked; none in the summary (same bits anywhere)
    assert "[timings.md](timings.md)" in text and "12" not in text.split("\n\n")[1]
    timings = (tmp_path / "r/timings.md").read_text()
    assert "| a | 12 | 3.00 | 2.00 | cpu |" in timings
    assert "| b | 12 | 3.00 | 3.00 | cpu |" in timings
    assert "| -0.070 |" in text  # the gap is shown signed, never as "best"
    assert "accuracy" not in text  # no model has it: no column
    assert "](../p/lb.png)" in text
    assert "| y | 0.250 | 0.375 | 0.312 |" in text  # worst class first, mean of the models
    assert "| Zipper | 0.900 | 0.200 | 0.700 |" in text and "| y |" not in text.split(
        "look wrong")[1]  # the one class beyond the cut-off, which is stated
    assert "1 of 4 classes" in text and "exceeds 0.085" in text
    assert max(len(line) for line in text.splitlines()) <= 120  # a 120-column terminal
    columns = text.split("\n\n")[1].splitlines()[0].strip("| ").split(" | ")[1:]
    for column in columns + ["train−valid lwlrap", "grad ratio first/last"]:
        assert f"- `{column}`: " in text, column  # each column explained
    assert "below 0, the training clips score lower" in text
    assert "`a`: vanishing — first/last gradient ratio" in text
    assert "[first conv filters](../p/weights/a/first_conv_filters.png)" in text
    assert (tmp_path / "p/lb.png").exists()
    with pytest.raises(FileNotFoundError, match="model 'c'"):
        write_report(["a", "c"], metrics, tmp_path / "x.md", tmp_path / "x.png")


def test_report_bolds_no_difference_inside_the_cis(tmp_path):
    metrics = tmp_path / "metrics"
    _metrics(metrics, "a", 0.70, ci=0.04)
    _metrics(metrics, "b", 0.75, ci=0.04)  # [0.71, 0.79] overlaps a's [0.66, 0.74]
    text = write_report(["a", "b"], metrics, tmp_path / "s.md", tmp_path / "lb.png")
    table = text.split("\n\n")[1]
    assert "**" not in table and "| b | 0.7500 | [0.710, 0.790] |" in table


def test_report_lists_known_issues(tmp_path):
    metrics = tmp_path / "metrics"
    _metrics(metrics, "a", 0.5, singlelabel={"accuracy": 0.8})
    issues = tmp_path / "known_issues.csv"
    issues.write_text("clip_id,issue\nc1,wrong label: Zipper\nc2,silent\n")
    text = write_report(["a"], metrics, tmp_path / "s.md", tmp_path / "lb.png",
                        known_issues=issues)
    assert "## Known dataset issues (2 clips" in text and "| c1 | wrong label: Zipper |" in text
    assert " accuracy |" in text and "| 0.8000 |" in text  # single-label accuracy column
    absent = write_report(["a"], metrics, tmp_path / "s.md", tmp_path / "lb.png",
                          known_issues=tmp_path / "none.csv")
    assert "Known dataset issues" not in absent
    issues.write_text("clip,problem\n")
    with pytest.raises(ValueError, match="known_issues.csv: missing column"):
        write_report(["a"], metrics, tmp_path / "s.md", tmp_path / "lb.png", known_issues=issues)


def test_report_writes_the_csvs_that_overlay_the_models(tmp_path):
    metrics = tmp_path / "metrics"
    for name, score in (("a", 0.5), ("b", 0.75)):
        _metrics(metrics, name, score, lwlrap_by_subset_per_class=[
            {"class": "x", "curated": 0.9, "noisy": 0.4}, {"class": "y", "curated": None,
                                                           "noisy": 0.3}])
        curves = metrics / "train" / name / "plots" / "metrics"
        for tsv, column in (("train/loss.tsv", "loss"), ("valid/loss.tsv", "loss"),
                            ("valid/lwlrap.tsv", "lwlrap")):
            (curves / tsv).parent.mkdir(parents=True, exist_ok=True)
            (curves / tsv).write_text(f"step\t{column}\n1\t0.5\n2\t{score}\n")
    out = tmp_path / "plots/models"
    write_report(["a", "b"], metrics, tmp_path / "s.md", tmp_path / "lb.png",
                 models_plots=out)
    valid = pd.read_csv(out / "valid_lwlrap.csv")
    assert valid.columns.tolist() == ["epoch", "model", "curve", "value"]
    assert valid.groupby("model")["value"].last().to_dict() == {"a": 0.5, "b": 0.75}
    loss = pd.read_csv(out / "loss.csv")
    assert sorted(set(loss["curve"])) == ["train loss", "validation loss"] and len(loss) == 8
    per_class = pd.read_csv(out / "per_class_lwlrap.csv")
    assert len(per_class) == 6 and set(per_class["model"]) == {"a", "b"}
    scatter = pd.read_csv(out / "curated_vs_noisy.csv")  # a class without both is left out
    assert scatter.values.tolist() == [["x", "a", 0.9, 0.4], ["x", "b", 0.9, 0.4]]


def test_report_shows_an_ensemble_as_a_row(tmp_path):
    """An ensemble has only its evaluation (no training, no weights): a row with "–" there,
    in the leaderboard and the overlay CSVs, described under the table; the noisy-label
    analysis stays the best model's (an ensemble scored only the test clips)."""
    metrics = tmp_path / "metrics"
    _metrics(metrics, "a", 0.5)
    _metrics(metrics, "b", 0.6, lwlrap_by_subset_per_class=SUBSETS)
    per_class = [{"class": c, "lwlrap": 0.8, "ap": 0.8, "f1": 0.8, "positives": 3}
                 for c in "xyz"]
    (metrics / "details" / "ens.json").write_text(json.dumps({
        "lwlrap": 0.8, "lwlrap_ci_low": 0.75, "lwlrap_ci_high": 0.85, "mAP": 0.7,
        "per_class": per_class, "members": ["a", "b"], "method": "rank"}))
    out = tmp_path / "plots/models"
    text = write_report(["a", "b"], metrics, tmp_path / "s.md", tmp_path / "lb.png",
                        models_plots=out, ensembles=["ens"])
    row = next(line for line in text.splitlines() if line.startswith("| ens |"))
    assert "| **0.8000** | [0.750, 0.850] |" in row and "| – |" in row
    assert "- `ens`: rank of `a`, `b`" in text
    assert "| Zipper | 0.900 | 0.200 | 0.700 |" in text  # b's, not the ensemble's
    assert "- `ens`: [per-class lwlrap](ens/per_class_lwlrap.csv)\n" in text
    assert "ens" in set(pd.read_csv(out / "per_class_lwlrap.csv")["model"])
    # skipped (one model trained): no metrics, no row
    (metrics / "details" / "ens.json").write_text(json.dumps({"skipped": "fewer than two"}))
    text = write_report(["a", "b"], metrics, tmp_path / "s.md", tmp_path / "lb.png",
                        ensembles=["ens"])
    assert "| ens |" not in text and "`ens`" not in text


def test_report_says_when_a_ci_comes_from_too_few_test_clips(tmp_path):
    # issue 33 item 13: the note evaluate@ records in the details reaches the summary
    metrics = tmp_path / "metrics"
    _metrics(metrics, "a", 0.5, ci_note="only 4 labelled test clips (fewer than 30): the 95 % "
                                        "CI says little")
    _metrics(metrics, "b", 0.75)
    text = write_report(["a", "b"], metrics, tmp_path / "s.md", tmp_path / "lb.png")
    assert "| a | 0.5000 | [0.450, 0.550] † |" in text
    assert "† `a`: only 4 labelled test clips (fewer than 30): the 95 % CI says little" in text
    assert "| b | **0.7500** | [0.700, 0.800] |" in text


def test_regression_plot_pairs_each_output_with_the_manifest_target(tmp_path, monkeypatch):
    """regression@<model>: the predictions' outputs after the classes, matched with the
    manifest's targets_* by clip (prefix optional), drawn; a classifier is refused."""
    from audiotag.analysis.regression import regression_rows, write_regression_plot
    from audiotag.core.errors import ParamsError
    from audiotag.data.manifest import ManifestError

    manifest = pd.DataFrame({"clip_id": ["c1", "c2", "c3"], "targets_snr": [1.0, 2.0, 3.0],
                             "targets_n": [4.0, 5.0, 6.0]})
    predictions = pd.DataFrame({"clip_id": ["c3", "c1"], "labels": ["x", "y"], "x": [0.1, 0.9],
                                "y": [0.2, 0.8], "targets_snr": [2.5, 1.5], "n": [6.5, 3.5]})
    rows = regression_rows(predictions, manifest, ["x", "y"])
    assert rows.values.tolist() == [["snr", 3.0, 2.5], ["snr", 1.0, 1.5], ["n", 6.0, 6.5],
                                    ["n", 4.0, 3.5]]
    with pytest.raises(ParamsError, match="no regression output"):
        regression_rows(predictions[["clip_id", "labels", "x", "y"]], manifest, ["x", "y"])
    with pytest.raises(ManifestError, match="no column targets_n"):
        regression_rows(predictions, manifest.drop(columns="targets_n"), ["x", "y"])
    import audiotag.analysis.regression as module

    monkeypatch.setattr(module, "read_manifest", lambda _dir: (manifest, ["x", "y"]))
    predictions.to_csv(tmp_path / "p.csv", index=False)
    write_regression_plot("m", tmp_path / "p.csv", tmp_path, tmp_path / "r.csv",
                          tmp_path / "r.png")
    assert pd.read_csv(tmp_path / "r.csv").columns.tolist() == ["target", "actual", "predicted"]
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_layer_views_show_every_conv_layer_with_its_weight_gradient(tmp_path):
    """Issue 34 item 9: per conv layer the activation, its gradient, the weights and their
    gradient (of the clips' summed top logits); one figure per layer, stale ones removed."""
    from audiotag.analysis.saliency import activation_maps, layer_view_name, plot_layer_views

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(4, 3, 3), torch.nn.ReLU(),
                                torch.nn.Conv1d(3, 2, 3), torch.nn.Flatten(),
                                torch.nn.Linear(2 * 6, 5))
    model[2].weight.requires_grad_(False)  # a frozen layer: no weight gradient
    x = torch.randn(2, 4, 10)
    maps = activation_maps(model, x, max_layers=0)
    assert [m["layer"] for m in maps] == ["0", "2"]
    logits = model(x)
    top = logits.detach().argmax(dim=1)
    expected = torch.autograd.grad(logits.gather(1, top[:, None]).sum(), model[0].weight)[0]
    assert torch.allclose(maps[0]["weight_grad"], expected)
    assert maps[1]["weight_grad"] is None and maps[1]["weight"].shape == (2, 3, 3)
    assert maps[0]["activation"].shape == maps[0]["gradient"].shape == (2, 3, 8)
    assert model[0].weight.grad is None  # the model is left as it was
    out = tmp_path / "layers"
    out.mkdir()
    (out / "99_stale.png").write_bytes(b"")
    files = plot_layer_views(maps, out, "m")
    assert sorted(p.name for p in out.iterdir()) == [layer_view_name(0, "0"),
                                                     layer_view_name(1, "2")]
    assert all(f.read_bytes()[:4] == b"\x89PNG" for f in files)
    assert [p.name for p in plot_layer_views([], out, "m")] == ["none.png"]
