"""An HTML template for `dvc plots show` / `dvc plots diff` whose pages render offline.

DVC's default page loads Vega, Vega-Lite and vega-embed from a CDN: without a network
every chart is blank. This writes a template that carries the three libraries inline
(from the ``vl-convert-python`` wheel, installed from PyPI by ``make install``) and points
the project's DVC config at it (``plots.html_template``), so every page works offline:

    python -m audiotag.plots.offline          # `make install` runs it

It writes ``.dvc/plots.html`` (git-ignored: 0.9 MB, rebuilt from the wheel) and sets
``plots.html_template`` in ``.dvc/config`` (a path relative to ``.dvc/``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

VEGA_LITE_VERSION = "5.21"  # what DVC's templates are written for (Vega-Lite 5 schema)
TEMPLATE_NAME = "plots.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    <meta charset="utf-8">
    {refresh_tag}
    <title>DVC plots (offline)</title>
    <!-- Vega, Vega-Lite and vega-embed, bundled by vl-convert-python: no network needed -->
    <script type="text/javascript">
%BUNDLE%
    </script>
    <script type="text/javascript">
        // SVG instead of vega-embed's default canvas: sharp when zoomed, text searchable,
        // and the marks are in the page (tests/e2e/test_report_render.py counts them)
        (function () {
            var embed = window.vegaEmbed;
            window.vegaEmbed = function (el, spec, opts) {
                return embed(el, spec, Object.assign({renderer: "svg"}, opts || {}));
            };
        })();
    </script>
    <style>
        body { font-family: sans-serif; }
        table { border-spacing: 15px; }
        details.diagnostics { border: 1px solid #999; margin: 8px 0; padding: 4px 8px; }
        details.diagnostics > summary { cursor: pointer; font-size: 1.1em; padding: 4px; }
    </style>
</head>
<body>
    {plot_divs}
    <script type="text/javascript">
%GROUPING%
    </script>
</body>
</html>
"""

# Run after the plots' own scripts: the page opens on the results, and every model's weight
# and gradient diagnostics (plots/weights/<model>/...) move into one collapsed section per
# model at the end. An image's box names its file (plots/weights/<model>/<file>); a Vega
# chart's id is the path with "/" and "." as "_", matched to the longest such model name.
GROUPING = r"""
(function () {
    var prefix = "plots_weights_";
    var divs = Array.prototype.slice.call(
        document.querySelectorAll('body > div[id^="' + prefix + '"]'));
    var models = [];
    divs.forEach(function (div) {
        var p = div.querySelector("p");
        var m = p && /^plots\/weights\/([^/]+)\//.exec(p.textContent.trim());
        if (m && models.indexOf(m[1]) < 0) { models.push(m[1]); }
    });
    models.sort(function (a, b) { return b.length - a.length; });
    var sections = {};
    var order = [];
    divs.forEach(function (div) {
        var model = "other";
        for (var i = 0; i < models.length; i++) {
            if (div.id.indexOf(prefix + models[i] + "_") === 0) { model = models[i]; break; }
        }
        if (!sections[model]) { sections[model] = []; order.push(model); }
        sections[model].push(div);
    });
    order.sort().forEach(function (model) {
        var details = document.createElement("details");
        details.className = "diagnostics";
        details.id = "diagnostics_" + model;
        var summary = document.createElement("summary");
        summary.textContent = "Weight and gradient diagnostics of " + model + ": " +
            sections[model].length + " plots (click to open)";
        details.appendChild(summary);
        sections[model].forEach(function (div) { details.appendChild(div); });
        document.body.appendChild(details);
    });
})();
"""


def page_template() -> str:
    """The template: DVC fills ``{plot_divs}`` (and ``{refresh_tag}``); it has no
    ``{scripts}`` placeholder, so DVC's CDN script tags are left out."""
    try:
        import vl_convert
    except ImportError:
        sys.exit("vl-convert-python is missing: `make install` (or pip install "
                 "vl-convert-python) installs it")
    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    for marker in ("</script", "{plot_divs}", "{scripts}", "{refresh_tag}"):
        if marker in bundle.lower():
            raise RuntimeError(f"the Vega bundle contains {marker!r}: it cannot be inlined")
    return PAGE.replace("%GROUPING%", GROUPING).replace("%BUNDLE%", bundle)


def install(repo: str | Path = ".", configure: bool = True) -> Path:
    """Write ``<repo>/.dvc/plots.html`` and (``configure``) set ``plots.html_template``."""
    dvc_dir = Path(repo) / ".dvc"
    if not dvc_dir.is_dir():
        raise FileNotFoundError(f"{dvc_dir}: not a DVC project (run `dvc init` first)")
    out = dvc_dir / TEMPLATE_NAME
    out.write_text(page_template(), encoding="utf-8")
    if configure:
        subprocess.run([sys.executable, "-m", "dvc", "config", "plots.html_template",
                        TEMPLATE_NAME], cwd=repo, check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=".", help="the DVC project (default: here)")
    parser.add_argument("--no-configure", action="store_true",
                        help="only write the template; leave .dvc/config alone")
    args = parser.parse_args()
    print(install(args.repo, not args.no_configure))


if __name__ == "__main__":
    main()
