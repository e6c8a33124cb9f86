import json

import pytest
import torch

from audiotag.analysis.report import write_report
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


def _metrics(root, name, score, **extra):
    (root / "train" / name).mkdir(parents=True)
    (root / "weights").mkdir(exist_ok=True)
    per_class = [{"class": c, "lwlrap": v, "ap": v, "f1": v, "positives": 3}
                 for c, v in zip("xyz", (score, score / 2, 1.0), strict=True)]
    (root / f"{name}.json").write_text(json.dumps({
        "lwlrap": score, "valid_lwlrap": score, "best_epoch": 3, "n_parameters": 1000,
        "inference_ms_per_clip": 2.0 if name == "a" else 3.0, "per_class": per_class, **extra}))
    (root / "train" / name / "metrics.json").write_text(json.dumps(
        {"epochs_run": 4, "train_seconds": 12.0}))
    (root / "weights" / f"{name}.json").write_text(json.dumps(
        {"summary": {"verdict": "vanishing" if name == "a" else "healthy"},
         "verdict_reasons": ["first/last gradient ratio 1e-07 < 0.001"]}))


def test_report_marks_the_best_model(tmp_path):
    metrics = tmp_path / "metrics"
    _metrics(metrics, "a", 0.5)
    _metrics(metrics, "b", 0.75, noisy_label_suspects=[
        {"class": "Zipper", "curated": 0.9, "noisy": 0.2}])
    text = write_report(["a", "b"], metrics, tmp_path / "r/summary.md", tmp_path / "p/lb.png")
    assert "| a | 0.5000 |" in text and "| b | **0.7500** |" in text
    assert "**2.00**" in text  # lower inference time is better
    assert "**1,000**" in text.split("| a |")[1].split("\n")[0]  # ties: both bold
    assert "accuracy" not in text  # no model has it: no column
    assert "](../p/lb.png)" in text
    assert "| y | 0.250 | 0.375 | 0.312 |" in text  # worst class first, mean of the models
    assert "| Zipper | 0.900 | 0.200 | 0.700 |" in text
    assert "`a`: vanishing — first/last gradient ratio" in text
    assert "[first conv filters](../p/weights/a/first_conv_filters.png)" in text
    assert (tmp_path / "p/lb.png").exists()
    with pytest.raises(FileNotFoundError, match="model 'c'"):
        write_report(["a", "c"], metrics, tmp_path / "x.md", tmp_path / "x.png")


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
