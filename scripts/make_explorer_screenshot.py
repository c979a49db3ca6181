"""The README's picture of the explorer: ``logitlens serve`` on the bundled model, the
electricians pun and its literal twin, a cell hovered; saved as docs/images/explorer.png.

Drives Debian's Chromium through Playwright (never a downloaded browser).

Run:  .venv/bin/python scripts/make_explorer_screenshot.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "explorer.png"
PUN = "Why do electricians make good swimmers? Because they know the"
LITERAL = "Electricians work with wires that carry electrical"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def main() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "logitlens", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        address = re.search(r"http://127\.0\.0\.1:\d+/", server.stdout.readline())
        if address is None:
            sys.exit("serve did not start")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 860})
            page.goto(address.group(0))
            page.wait_for_function("() => document.querySelectorAll('#lens option').length")
            page.fill("#prompts", f"{PUN}\n{LITERAL}")
            page.fill("#target", " current")
            page.fill("#alternative", " water")
            page.click("#run")
            page.wait_for_function("() => !document.getElementById('run').disabled")
            page.check("#log-scale")
            page.hover('td.cell[data-layer="27"][data-col="10"]')
            page.screenshot(path=str(OUT))
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    print(f"Written {OUT}")


if __name__ == "__main__":
    main()
