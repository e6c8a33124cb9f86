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
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
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
    return PAGE.replace("%BUNDLE%", bundle)


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
