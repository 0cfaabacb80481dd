"""Render a Snakemake report in headless Chromium: one PNG per page, to look at it as a user would.

    python report/render.py results/demo/report.html --out results/demo/report_png

Pages: ``landing.png`` (the workflow description beside the DAG), ``category-<name>.png`` (a category's entries
with their labels) and ``result-<file>.png`` (each figure or table, with its caption in the side panel). The report
is a single-page app; each page is a copy of the HTML with a script that opens the page (``app.showCategory``,
``app.showResultInfo``, ``app.setView``) once the app is up. Needs ``chromium`` (Debian: ``apt-get install
chromium``) or ``--chromium PATH``; tests/test_report.py runs it (``pytest -m slow``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OPEN = """<script>window.addEventListener("load", function () {{ setTimeout(function () {{ {action} }}, 400); }});
</script></body>"""


def pages(html: str) -> dict[str, str]:
    """page name -> JavaScript that opens it, from the report's own ``categories`` and ``results`` data."""
    categories = json.loads(re.search(r"categories = (\{.*?\});\n", html).group(1))
    out = {"landing": ""}
    for cat, subcats in categories.items():
        slug = re.sub(r"\W+", "_", cat).strip("_").lower()
        out[f"category-{slug}"] = f"app.showCategory({json.dumps(cat)});"
        for paths in subcats.values():
            for path in paths:
                kind = "img" if path.endswith((".png", ".svg", ".jpg")) else "html"
                out[f"result-{Path(path).parent.name}-{Path(path).stem}"] = (
                    f"app.showCategory({json.dumps(cat)}); app.showResultInfo({json.dumps(path)}); "
                    f"app.setView({{content: {json.dumps(kind)}, contentPath: results[{json.dumps(path)}].data_uri, "
                    f"resultPath: {json.dumps(path)}}});"
                )
    return out


def render(report: Path, out: Path, chromium: str = "chromium", size: str = "1400,1000") -> list[Path]:
    html = report.read_text(encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, action in pages(html).items():
            page = Path(tmp) / f"{name}.html"
            head, _, tail = html.rpartition("</body>")  # the last one: the scripts contain the string too
            page.write_text(head + OPEN.format(action=action) + tail, encoding="utf-8")
            png = out / f"{name}.png"
            width, height = (int(v) for v in size.split(","))
            if name == "landing":  # the description is long: a taller window instead of scrolling
                height *= 2
            subprocess.run(
                [
                    *[chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"],
                    *[f"--window-size={width},{height}", "--virtual-time-budget=5000", f"--screenshot={png}"],
                    page.as_uri(),
                ],
                check=True,
                capture_output=True,
                timeout=180,
            )
            written.append(png)
            print(f"render: {png}", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", type=Path, help="the report.html of snakemake --report")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    p.add_argument("--chromium", default=shutil.which("chromium") or "chromium", help="browser executable")
    p.add_argument(
        "--size", default="1400,1000", help="window size in pixels, WIDTH,HEIGHT (default 1400,1000)"
    )
    a = p.parse_args(argv)
    render(a.report, a.out, a.chromium, a.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
