"""The `dvc plots` page template that renders offline (issue 18): Vega inline from the
vl-convert-python wheel, no CDN, and the project's DVC config points at it. The headless
Chromium render with the network blocked is in tests/e2e/test_report_render.py."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from audiotag.plots.offline import install, page_template

REPO = Path(__file__).resolve().parents[2]


def test_template_carries_vega_inline_and_no_cdn():
    page = page_template()
    assert "{plot_divs}" in page and "{scripts}" not in page  # DVC's CDN tags have no slot
    assert "http://" not in page.split("<script", 1)[0] and "cdn.jsdelivr" not in page
    for name in ("window.vegaEmbed=", "window.vega=", "window.vegaLite="):
        assert name in page, name
    assert 'renderer: "svg"' in page


def test_install_writes_the_template_and_configures_dvc(tmp_path):
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path,
                   check=True)
    out = install(tmp_path)
    assert out == tmp_path / ".dvc/plots.html" and out.stat().st_size > 500_000
    config = configparser.ConfigParser()
    config.read(tmp_path / ".dvc/config")
    assert config["plots"]["html_template"] == "plots.html"  # relative to .dvc/
    with pytest.raises(FileNotFoundError, match="not a DVC project"):
        install(tmp_path / "nowhere")


def test_this_repository_uses_the_offline_template():
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc/config")
    assert config["plots"]["html_template"] == "plots.html"
    assert "audiotag.plots.offline" in (REPO / "Makefile").read_text()
    assert "/.dvc/plots.html" in (REPO / ".gitignore").read_text().splitlines()
