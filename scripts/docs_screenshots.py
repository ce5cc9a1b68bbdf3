"""Screenshots of the built documentation site in headless Chromium, to look at before a change
to the docs is called done.

    make docs && python scripts/docs_screenshots.py                 # -> docs_screenshots/*.png
    python scripts/docs_screenshots.py --site site --out /tmp/shots --width 1280 --height 2400

Serves ``--site`` over HTTP on a free local port (MathJax's fonts do not load from ``file://``
URLs), then has Chromium (the OS package: ``apt-get install chromium``; or ``--chromium PATH``)
render each page and save a PNG: the home page, the training guide and the samplers' API page
(``--pages`` for others). Chromium's virtual time budget lets MathJax finish typesetting first.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGES = {"home": "", "training": "training/", "api_samplers": "api/samplers/"}
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(explicit: str | None) -> str:
    for name in ([explicit] if explicit else CHROMIUM_NAMES):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(
        f"no Chromium found (tried {', '.join([explicit] if explicit else CHROMIUM_NAMES)}): "
        "apt-get install -y chromium, or pass --chromium PATH"
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # one line per file would drown the output
        pass


def serve(site: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def screenshot(chromium: str, url: str, path: Path, width: int, height: int, budget_ms: int) -> None:
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
        "--disable-dev-shm-usage", f"--window-size={width},{height}",
        f"--virtual-time-budget={budget_ms}", f"--screenshot={path}", url,
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0 or not path.is_file():
        raise RuntimeError(f"chromium failed on {url} (exit {result.returncode}):\n{result.stderr[-2000:]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--site", type=Path, default=REPO / "site", help="the built site (make docs)")
    p.add_argument("--out", type=Path, default=REPO / "docs_screenshots")
    p.add_argument("--pages", nargs="*", default=None, help="NAME=PATH pairs (default: home, training, api)")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=2000)
    p.add_argument("--budget-ms", type=int, default=15000, help="Chromium's virtual time budget")
    p.add_argument("--chromium", default=None)
    args = p.parse_args(argv)
    if not (args.site / "index.html").is_file():
        raise SystemExit(f"{args.site}/index.html not found: run `make docs` first")
    pages = dict(item.split("=", 1) for item in args.pages) if args.pages else PAGES
    chromium = find_chromium(args.chromium)
    args.out.mkdir(parents=True, exist_ok=True)
    server = serve(args.site)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        for name, page in pages.items():
            path = args.out / f"{name}.png"
            screenshot(chromium, base + page, path, args.width, args.height, args.budget_ms)
            print(path)
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
