"""The README's picture of the explorer: ``logitlens serve`` on the bundled model, the
electricians pun and its literal twin, a cell hovered; saved as docs/images/explorer.png.

Drives Debian's Chromium through Playwright (never a downloaded browser), with the
tests' helpers (tests/page_checks.py).

Run:  .venv/bin/python scripts/make_explorer_screenshot.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "images" / "explorer.png"
PUN = "Why do electricians make good swimmers? Because they know the"
LITERAL = "Electricians work with wires that carry electrical"


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from page_checks import launched, serving

    os.environ["PYTHONPATH"] = str(ROOT / "src")  # the server runs this checkout
    with serving() as (address, _), launched() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        page.goto(address)
        page.wait_for_function("() => document.querySelectorAll('#lens option').length")
        page.fill("#prompts", f"{PUN}\n{LITERAL}")
        page.fill("#target", " current")
        page.fill("#alternative", " water")
        page.click("#run")
        page.wait_for_function("() => !document.getElementById('run').disabled")
        page.check("#log-scale")
        page.hover('td.cell[data-layer="27"][data-col="10"]')
        page.screenshot(path=str(OUT))
    print(f"Written {OUT}")


if __name__ == "__main__":
    main()
