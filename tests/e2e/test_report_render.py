"""`dvc plots show` / `dvc plots diff` pages of a real tiny pipeline run, rendered in headless
Chromium: every declared plot is on the page, titled, and drawn.

The page loads Vega from a CDN; for an offline machine the test swaps those three script
tags for one local bundle (vl-convert-python ships Vega, Vega-Lite and vega-embed). The
screenshots and the page are kept in ``test-artifacts/`` (git-ignored).
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
VEGA_PLOTS = [("{m}/per_class_lwlrap.csv", "test lwlrap per class"),
              ("{m}/lwlrap_by_subset.csv", "curated vs noisy"),
              ("{m}/confusion.csv", "confusion matrix"),
              ("{m}/per_class_report.csv", "single-label F1 per class"),
              ("weights/{m}/activations.csv", "activation std per layer"),
              ("weights/{m}/layers.csv", "update-to-weight ratio")]
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


def offline_page(page: Path) -> Path:
    """A copy of a `dvc plots` page that loads Vega from a local bundle, when available."""
    try:
        import vl_convert
    except ImportError:  # keep the CDN scripts: renders where the internet is reachable
        return page
    (page.parent / "vega_bundle.js").write_text(vl_convert.javascript_bundle(vl_version="5.21"))
    html = page.read_text()
    html = re.sub(r'<script src="https://cdn\.jsdelivr\.net/npm/vega[^"]*"></script>\s*', "",
                  html)
    html = html.replace("</title>", '</title>\n<script src="vega_bundle.js"></script>', 1)
    out = page.with_name("offline.html")
    out.write_text(html)
    return out


def render(page: Path, artifact: Path, height: int) -> str:
    """Screenshot ``page`` into ``artifact`` and return the DOM after its scripts ran."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium not found (Debian: apt-get install chromium; `make test` does it)")
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--virtual-time-budget=20000", f"--window-size=1400,{height}"]
    artifact.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*base, f"--screenshot={artifact}", page.as_uri()], capture_output=True,
                   timeout=180, check=True)
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=180, check=True).stdout
    assert artifact.stat().st_size > 10_000, "blank screenshot"
    return dom


def _spec_titles(html: str) -> list[str]:
    return re.findall(r'"title": \{"text": "([^"]*)"', html)


def test_plots_show_page_has_every_plot_titled(project, repo_root):
    targets = [f"plots/{m}" for m in MODELS] + [f"plots/weights/{m}" for m in MODELS]
    run(["dvc", "plots", "show", "-o", "show", *targets, "plots/leaderboard.png"], project)
    page = project / "show/index.html"
    html = page.read_text()
    titles = _spec_titles(html)
    for m in MODELS:
        for path, title in VEGA_PLOTS:
            data = (project / "plots" / path.format(m=m)).read_text().strip().splitlines()
            if len(data) < 2:  # header only (e.g. no test clip with a single label): skipped
                continue
            assert any(title in t and t.startswith(m) for t in titles), (m, title, titles)
        for image in IMAGES:
            assert f"plots_{image.format(m=m).replace('/', '_')}" in html, image
    assert "workspace_plots_leaderboard.png" in html
    dom = render(offline_page(page), repo_root / "test-artifacts/dvc_plots_show.png", 6000)
    assert dom.count('class="vega-embed') >= len(MODELS) * 3
    drawn = dom.count("<svg") + dom.count("<canvas")
    if "vega_bundle.js" in dom:  # Vega was available: every plot must have been drawn
        assert drawn >= len([t for t in titles if t]), "some Vega plots did not render"
    shutil.copy2(page, repo_root / "test-artifacts/dvc_plots_show.html")


def test_plots_diff_puts_two_experiments_side_by_side(project, repo_root):
    run(["dvc", "plots", "diff", "-o", "diff", "HEAD", EXP, "--targets",
         f"plots/{MODELS[0]}/per_class_lwlrap.csv", f"plots/weights/{MODELS[0]}/histograms.png"],
        project)
    html = (project / "diff/index.html").read_text()
    spec = re.search(r"var spec = (\{.*\});", html).group(1)
    revs = {row["rev"] for row in json.loads(spec)["data"]["values"]}
    assert len(revs) == 2 and EXP in " ".join(revs), revs
    assert len(re.findall(r"<img src=\"static/[^\"]*histograms\.png\"", html)) == 2
    render(offline_page(project / "diff/index.html"),
           repo_root / "test-artifacts/dvc_plots_diff.png", 2400)


def test_exp_show_has_the_headline_metrics_and_verdict(project):
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    runs = [r for rev in shown for e in (rev.get("experiments") or []) for r in e.get("revs", [])]
    exp = next(r for r in runs if r.get("name") == EXP)
    metrics = exp["data"]["metrics"]
    for m in MODELS:
        evaluation = metrics[f"metrics/{m}.json"]["data"]
        assert {"lwlrap", "mAP", "f1_micro", "inference_ms_per_clip"} <= set(evaluation)
        assert isinstance(evaluation["overfit"]["loss_gap"], float)
        verdict = metrics[f"metrics/weights/{m}.json"]["data"]["summary"]["verdict"]
        assert verdict in ("healthy", "vanishing", "exploding")
    summary = (project / "reports/summary.md").read_text()
    assert all(f"| {m} |" in summary for m in MODELS) and "worst classes" in summary
