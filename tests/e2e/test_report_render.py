"""`dvc plots show` / `dvc plots diff` pages of a real tiny pipeline run, rendered in headless
Chromium with the network blocked: every declared plot is on the page, titled, and drawn
(each chart's SVG holds marks).

The project is set up as `make install` sets one up: `python -m audiotag.plots.offline`
writes the page template with Vega, Vega-Lite and vega-embed inline (from the
vl-convert-python wheel) and sets `plots.html_template` in `.dvc/config`, so DVC's pages
load nothing from a CDN. The screenshots and the pages are kept in ``test-artifacts/``
(git-ignored).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dvc_project import commit, run

pytestmark = pytest.mark.e2e

# the default models: the shared tiny project's (tests/e2e/conftest.py)
MODELS = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text()
                        )["train"]["models"]
# per model: (file under plots/, title fragment) of every Vega plot dvc.yaml declares
VEGA_PLOTS = [("{m}/confusion.csv", "confusion matrix"),
              ("weights/{m}/activations.csv", "spread of each layer's output")]
# the top-level plots: every model in one chart
OVERLAYS = [("models/valid_lwlrap.csv", "Validation lwlrap after each epoch"),
            ("models/loss.csv", "Training vs validation loss"),
            ("models/per_class_lwlrap.csv", "Test lwlrap of each class"),
            ("models/curated_vs_noisy.csv", "curated vs noisy labels")]
IMAGES = ["weights/{m}/histograms.png", "weights/{m}/grad_norms.png",
          "weights/{m}/update_ratios.png", "weights/{m}/first_conv_filters.png"]
EXP = "render-exp"


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="module")
def project(project_copy) -> Path:
    """Tiny pipeline run, committed; then one experiment that changes a weights param."""
    root = project_copy("render")
    commit(root, "baseline")
    run(["dvc", "exp", "run", "-n", EXP, "-S", "weights.hist_bins=12"], root)
    return root


def render(page: Path, artifact: Path, height: int) -> str:
    """Screenshot ``page`` into ``artifact`` and return the DOM after its scripts ran."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not found (Debian: apt-get install chromium; `make test` does it)")
    offline = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               "--host-resolver-rules=MAP * ~NOTFOUND"]  # no network: nothing from a CDN
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            *offline, "--virtual-time-budget=20000", f"--window-size=1400,{height}"]
    artifact.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*base, f"--screenshot={artifact}", page.as_uri()], capture_output=True,
                   timeout=180, check=True)
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=180, check=True).stdout
    assert artifact.stat().st_size > 10_000, "blank screenshot"
    return dom


def _spec_titles(html: str) -> list[str]:
    return re.findall(r'"title": \{"text": "([^"]*)"', html)


def drawn_charts(dom: str) -> list[int]:
    """Per Vega chart of a rendered page (its SVG), the number of marks with data drawn
    (a mark group of Vega's SVG holding at least one item; axes and legends not counted).
    A chart of an empty spec (DVC embeds one for a header-only CSV: a plot that does not
    apply) is drawn at 0 x 0 with no mark: 0."""
    item = re.compile(r'<g class="mark-\w+ role-mark[^>]*>\s*<(?:path|text|line|rect|image)')
    charts = re.split(r'<svg[^>]*class="marks"', dom)[1:]
    return [0 if re.match(r'\s*width="0"|[^>]*height="0"', chart) else len(item.findall(chart))
            for chart in charts]


def page_height(page: Path) -> int:
    """The rendered page's height in CSS pixels (a copy of it measures itself)."""
    probe = page.with_name("height_probe.html")
    probe.write_text(page.read_text().replace("</body>", (
        "<script>setTimeout(function () { var p = document.createElement('pre'); "
        "p.id = 'page-height'; p.textContent = Math.ceil("
        "document.body.getBoundingClientRect().height); document.body.appendChild(p); }, "
        "8000);</script></body>")))
    dom = render(probe, probe.with_suffix(".png"), 1200)
    return int(re.search(r'<pre id="page-height">(\d+)', dom).group(1))


def test_plots_show_page_renders_offline_with_every_plot_titled(project, repo_root):
    run(["dvc", "plots", "show", "-o", "show"], project)
    page = project / "show/index.html"
    html = page.read_text()
    assert "cdn.jsdelivr" not in html and "window.vegaEmbed" in html  # the inline bundle
    titles = _spec_titles(html)
    for m in MODELS:
        for path, title in VEGA_PLOTS:
            data = (project / "plots" / path.format(m=m)).read_text().strip().splitlines()
            if len(data) < 2:  # header only (e.g. no test clip with a single label): skipped
                continue
            assert any(title in t and t.startswith(m) for t in titles), (m, title, titles)
        for image in IMAGES:
            assert f"plots_{image.format(m=m).replace('/', '_')}" in html, image
    for _, title in OVERLAYS:
        assert any(title in t for t in titles), (title, titles)
    assert "workspace_plots_leaderboard.png" in html
    dom = render(page, repo_root / "test-artifacts/dvc_plots_show.png", 9000)
    charts = drawn_charts(dom)
    assert len(charts) == len([t for t in titles if t]), "some Vega plots did not render"
    assert all(n > 0 for n in charts), f"empty (0 x 0) charts or charts without marks: {charts}"
    shutil.copy2(page, repo_root / "test-artifacts/dvc_plots_show.html")


def test_plots_show_page_has_only_plots_that_apply_and_groups_the_diagnostics(project,
                                                                              repo_root):
    """Issue 34: a tagging dataset's page has no regression chart (no declared plot, no
    stage); every chart drawn; every model's weight diagnostics in one collapsed section at
    the end, so the page stays short."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["train"]["task"] in ("auto", "multilabel", "singlelabel")
    assert params["report"]["regression_plots"] == []  # the default: a tagging dataset
    run(["dvc", "plots", "show", "-o", "show-applies"], project)
    page = project / "show-applies/index.html"
    html = page.read_text()
    assert not [t for t in _spec_titles(html) if "regression" in t.lower()]
    assert "regression" not in " ".join(re.findall(r'id ?= ?"([^"]*)"', html))
    dom = render(page, repo_root / "test-artifacts/dvc_plots_show_grouped.png", 6000)
    assert drawn_charts(dom) and all(n > 0 for n in drawn_charts(dom)), drawn_charts(dom)
    # the sections close the page, one per model in name order (vega-embed's menus are
    # <details> too: a section is told by its id, and runs to the next one)
    starts = {m: dom.find(f'<details class="diagnostics" id="diagnostics_{m}">')
              for m in MODELS}
    assert all(i > 0 for i in starts.values()), starts  # found, and closed (no `open`)
    bounds = sorted(starts.values()) + [len(dom)]
    for m, start in starts.items():
        end = bounds[bounds.index(start) + 1]
        for image in IMAGES:  # every weight image of the model inside its section
            name = f"plots_{image.format(m=m).replace('/', '_').replace('.', '_')}"
            assert start < dom.find(f'id="{name}"') < end, (m, name)
    height = page_height(page)
    assert 1000 < height < 7000, height  # the grouped page (11,400 px before)


def test_plots_diff_puts_two_experiments_side_by_side(project, repo_root):
    run(["dvc", "plots", "diff", "-o", "diff", "HEAD", EXP, "--targets",
         "plots/models/per_class_lwlrap.csv", f"plots/weights/{MODELS[0]}/histograms.png"],
        project)
    html = (project / "diff/index.html").read_text()
    spec = re.search(r"var spec = (\{.*\});", html).group(1)
    revs = {row["rev"] for row in json.loads(spec)["data"]["values"]}
    assert len(revs) == 2 and EXP in " ".join(revs), revs
    assert len(re.findall(r"<img src=\"static/[^\"]*histograms\.png\"", html)) == 2
    dom = render(project / "diff/index.html", repo_root / "test-artifacts/dvc_plots_diff.png",
                 2400)
    assert drawn_charts(dom) and all(n > 0 for n in drawn_charts(dom))
    # each model of each revision its own colour and legend entry (issue 29)
    missing = [f"{m} @ {rev}" for m in MODELS for rev in revs if f"{m} @ {rev}" not in dom]
    assert not missing, missing


def test_exp_show_has_the_headline_metrics_and_verdict(project):
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    runs = [r for rev in shown for e in (rev.get("experiments") or []) for r in e.get("revs", [])]
    exp = next(r for r in runs if r.get("name") == EXP)
    metrics = exp["data"]["metrics"]
    for m in MODELS:
        evaluation = metrics[f"metrics/{m}.json"]["data"][m]
        assert set(evaluation) == {"lwlrap", "valid_lwlrap"}
        assert f"metrics/weights/{m}.json" not in metrics  # details: not `dvc exp show` columns
    summary = (project / "reports/summary.md").read_text()
    assert all(f"| {m} |" in summary for m in MODELS) and "worst classes" in summary
