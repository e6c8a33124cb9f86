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
    assert summary["grad_ratio_first_last"] == pytest.approx(0.01 / 2.0)


def test_gradient_heatmap(tmp_path):
    layers, matrix = gradient_matrix(HISTORY)
    assert layers == ["conv", "fc"] and matrix.tolist() == [[0.5, 0.01], [1.0, 2.0]]
    plot_gradient_heatmap(HISTORY, tmp_path / "g.png", "title")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_marks_the_best_model(tmp_path):
    metrics = tmp_path / "metrics"
    for name, score in (("a", 0.5), ("b", 0.75)):
        (metrics / "train" / name).mkdir(parents=True)
        (metrics / "weights").mkdir(exist_ok=True)
        (metrics / f"{name}.json").write_text(json.dumps({
            "lwlrap": score, "valid_lwlrap": score, "best_epoch": 3, "n_parameters": 1000}))
        (metrics / "train" / name / "metrics.json").write_text(json.dumps(
            {"epochs_run": 4, "train_seconds": 12.0}))
        (metrics / "weights" / f"{name}.json").write_text(json.dumps({"summary": {}}))
    text = write_report(["a", "b"], metrics, tmp_path / "r/summary.md", tmp_path / "p/lb.png")
    assert "| a | 0.5000 |" in text and "| b | **0.7500** |" in text
    assert "](../p/lb.png)" in text
    assert (tmp_path / "p/lb.png").exists()
    with pytest.raises(FileNotFoundError, match="model 'c'"):
        write_report(["a", "c"], metrics, tmp_path / "x.md", tmp_path / "x.png")
