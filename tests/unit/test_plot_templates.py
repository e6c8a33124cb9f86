"""The custom Vega-Lite templates of dvc.yaml's top-level plots (every model in one chart)
tell revisions apart in `dvc plots diff` (issue 29): each model of each revision is its
own colour with a legend entry `<model> @ <rev>`, while `dvc plots show` (one revision)
keeps one colour per model, labelled with the model alone.

The templates are filled the way `dvc plots diff` fills them (DVC's own
``match_defs_renderers``: its converter adds the ``rev`` field, dvc-render fills the
anchors), from dvc.yaml's real plot definitions, then rendered to SVG by Vega-Lite
(vl-convert, the version the offline page bundles) and the legend's labels are read back.
"""

from __future__ import annotations

import re
from pathlib import Path

import vl_convert
import yaml

from audiotag.plots.offline import VEGA_LITE_VERSION

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("cnn1d", "crnn")
CLASSES = ("dog", "siren", "rain")


def top_level_plots() -> dict[str, dict]:
    """dvc.yaml's top-level plots that use the project's own templates."""
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    found = {path: props for entry in plots for path, props in entry.items()
             if "src/audiotag/plots/templates/" in str(props.get("template", ""))}
    assert len(found) >= 4, found
    return found


def rows(path: str, shift: float) -> list[dict[str, str]]:
    """A few CSV rows (strings, as DVC reads a CSV) of the columns the stages write."""
    out = []
    for i, model in enumerate(MODELS):
        for j, name in enumerate(CLASSES):
            value = f"{0.2 + 0.1 * i + 0.05 * j + shift:.3f}"
            if path.endswith(("valid_lwlrap.csv", "loss.csv")):
                curves = ["train loss", "validation loss"] if "loss" in path else \
                    ["validation lwlrap"]
                out += [{"epoch": str(j + 1), "model": model, "curve": c, "value": value}
                        for c in curves]
            elif path.endswith("per_class_lwlrap.csv"):
                out.append({"class": name, "model": model, "lwlrap": value})
            else:
                out.append({"class": name, "model": model, "curated": value, "noisy": value})
    return out


def legend_labels(revs: list[str], monkeypatch) -> dict[str, list[str]]:
    """Per top-level plot, the legend labels of its chart filled with ``revs``' data."""
    from dvc.render.match import match_defs_renderers

    monkeypatch.chdir(ROOT)  # the templates' paths in dvc.yaml are relative to the project
    definitions = top_level_plots()
    data = {rev: {"definitions": {"data": {"dvc.yaml": {"data": definitions}}},
                  "sources": {"data": {path: {"props": {}, "data": rows(path, 0.1 * k)}
                                       for path in definitions}}}
            for k, rev in enumerate(revs)}
    labels = {}
    for found in match_defs_renderers(data):
        spec = found.renderer.get_filled_template()
        assert {d["rev"] for d in spec_values(spec)} == set(revs)  # DVC's field, per datum
        svg = vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE_VERSION)
        legend = re.findall(r'<g class="mark-text role-legend-label".*?</g>\s*</g>', svg, re.S)
        labels[found.renderer.name] = [t for block in legend
                                       for t in re.findall(r"<text[^>]*>([^<]*)</text>", block)]
    assert set(labels) == set(definitions)
    return labels


def spec_values(spec: dict) -> list[dict]:
    """The data rows DVC filled in (top level, or the layer that holds them)."""
    if isinstance((spec.get("data") or {}).get("values"), list):
        return spec["data"]["values"]
    return [row for layer in spec.get("layer", []) for row in spec_values(layer)
            if "rev" in row]


def test_plots_diff_gives_each_model_of_each_revision_a_legend_entry(monkeypatch):
    for plot, labels in legend_labels(["HEAD", "exp-a"], monkeypatch).items():
        wanted = {f"{m} @ {rev}" for m in MODELS for rev in ("HEAD", "exp-a")}
        assert wanted <= set(labels), (plot, labels)


def test_plots_show_labels_each_model_alone(monkeypatch):
    for plot, labels in legend_labels(["workspace"], monkeypatch).items():
        assert set(MODELS) <= set(labels), (plot, labels)
        assert not [x for x in labels if "@" in x or "workspace" in x], (plot, labels)


PER_MODEL_TEMPLATES = {"confusion_counts.json"}  # a stage's plot, one chart per model


def test_the_legend_tests_cover_every_overlay_template():
    used = {Path(p["template"]).name for p in top_level_plots().values()}
    files = {p.name for p in (ROOT / "src/audiotag/plots/templates").glob("*.json")}
    assert used == files - PER_MODEL_TEMPLATES
    text = (ROOT / "dvc.yaml").read_text()
    assert all(f"src/audiotag/plots/templates/{name}" in text for name in PER_MODEL_TEMPLATES)


def _filled(template: str, props: dict, rows: list[dict], rev: str = "workspace") -> dict:
    """``template`` filled by dvc-render as `dvc plots show` fills it."""
    from dvc_render.vega import VegaRenderer

    datapoints = [{**row, "rev": rev, "filename": "f.csv"} for row in rows]
    renderer = VegaRenderer(datapoints, "f.csv", template=str(ROOT / template), **props)
    return renderer.get_filled_template()


def test_the_confusion_matrix_writes_every_count_without_a_checkbox():
    """DVC's confusion template hides the counts behind a stray "showValues" checkbox."""
    rows = [{"actual": a, "predicted": p} for a, p in
            [("dog", "dog"), ("dog", "dog"), ("dog", "rain"), ("rain", "rain")]]
    spec = _filled("src/audiotag/plots/templates/confusion_counts.json",
                   {"x": "actual", "y": "predicted", "title": "confusion"}, rows)
    assert "bind" not in str(spec) and "params" not in spec
    svg = vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE_VERSION)
    assert "<input" not in svg
    texts = re.findall(r'<g class="mark-text role-mark[^"]*".*?</g>', svg, re.S)
    counts = sorted(t for block in texts for t in re.findall(r"<text[^>]*>(\d+)</text>", block))
    assert counts == ["0", "1", "1", "2"]  # dog->dog 2, dog->rain 1, rain->rain 1, rain->dog 0


def test_the_scatter_labels_only_the_classes_furthest_below_the_diagonal():
    """Labels of every class overlapped: each model labels its 3 worst classes."""
    rows = [{"class": f"c{i}", "model": m, "curated": "0.9", "noisy": f"{0.9 - 0.01 * i:.2f}"}
            for m in MODELS for i in range(10)]
    definition = top_level_plots()["plots/models/curated_vs_noisy.csv"]
    spec = _filled(definition["template"], {k: v for k, v in definition.items()
                                            if k != "template"}, rows)
    svg = vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE_VERSION)
    marks = re.findall(r'<g class="mark-text role-mark[^"]*".*?</g>', svg, re.S)
    labels = [t for block in marks for t in re.findall(r"<text[^>]*>([^<]*)</text>", block)]
    assert sorted(labels) == sorted(["c9", "c8", "c7"] * len(MODELS))
