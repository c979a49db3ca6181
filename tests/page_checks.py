"""Debian's Chromium driven by Playwright (never a downloaded browser), for page tests.

``launched()`` yields a Playwright browser, or skips the test where Chromium or Playwright
is missing; ``serving()`` runs ``logitlens serve`` in a subprocess on 127.0.0.1.
``visible()`` and ``grid_colour()`` restate, independently of report.js, how the lens view
shows a token and colours a cell. The benchmark and the README's screenshot script use
these too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
_VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"}


@contextmanager
def launched() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh --test installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serving(*options: str) -> Iterator[tuple[str, int]]:
    """``logitlens serve --port 0 OPTIONS`` in a subprocess; yields the page's address and
    the server's process id, and stops the server after. Its log goes to a temporary file
    (a full pipe would block it)."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "logitlens", "serve", "--port", "0", *options],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            line = process.stdout.readline()
            address = re.search(r"http://127\.0\.0\.1:\d+/", line)
            if address is None:
                log.seek(0)
                raise RuntimeError(f"serve did not start: {line}{log.read()}")
            yield address.group(0), process.pid
        finally:
            process.terminate()
            process.wait(30)


def visible(text: str) -> str:
    """A token as the grid should show it: whitespace as a sign, control bytes as <0x..>."""
    return "".join(
        _VISIBLE.get(c, f"<0x{ord(c):02X}>") if ord(c) <= 0x20 or c == "\x7f" else c for c in text
    )


def grid_colour(prob: float) -> np.ndarray:
    """The grid's colour for a top-1 probability: white to dark blue."""
    t = min(1.0, max(0.0, prob))
    return np.array([247 - t * (247 - 8), 251 - t * (251 - 48), 255 - t * (255 - 107)])


def grid_cells(frame: Any) -> dict[tuple[int, int], str]:
    """``{(layer, column): text}`` of the lens view's grid in a page or frame."""
    rows = frame.eval_on_selector_all(
        "td.cell", "cs => cs.map(c => [+c.dataset.layer, +c.dataset.col, c.textContent])"
    )
    return {(layer, col): text for layer, col, text in rows}


def check_grid(frame: Any, expected: Any, prompt: int = 0, byte_labels: bool = False) -> None:
    """Every cell of the grid shown for ``prompt`` is the library's top-1 token.

    ``byte_labels``: the page knows the tokenizer (the explorer), so a token that is part
    of a character shows its bytes rather than U+FFFD.
    """
    shown = grid_cells(frame)
    n_layers, n_tokens = len(expected.layers), len(expected.tokens[prompt])
    assert len(shown) == n_layers * n_tokens
    for layer in range(n_layers):
        for col in range(n_tokens):
            text = expected.token_text(expected.top_ids[prompt, layer, col, 0])
            if byte_labels and "\ufffd" in text:
                assert "<0x" in shown[layer, col]
            else:
                assert shown[layer, col] == visible(text), (layer, col)
