"""The HTML report: its data, and the page itself driven in headless Chromium.

The browser is driven over the DevTools protocol (``websocket-client`` comes with
nnsight): real mouse events hover and click a cell, JavaScript exceptions and console
errors are collected from the first script on, and a screenshot is checked for content.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import logitlens
from logitlens import InputError
from logitlens.pictures.report import render_report, report_data, write_report

PUN = "Why do electricians make good swimmers? Because they know the"
LITERAL = "Electricians work with wires that carry electrical"


@pytest.fixture(scope="module")
def tiny_llama():
    from tiny_models import tiny_model

    hf_model, tokenizer = tiny_model("llama")
    return logitlens.load_model(hf_model, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def tiny_result(tiny_llama):
    return logitlens.analyze(
        tiny_llama,
        [PUN, LITERAL],
        targets=" current",
        positions="all",
        k=5,
        metrics=["topk", "entropy", "kl", "final_rank"],
    )


def test_data_holds_every_prompt_and_cell(tiny_result):
    data = report_data(tiny_result)
    assert [e["prompt"] for e in data["entries"]] == [PUN, LITERAL]
    first = data["entries"][0]
    n_tokens = len(tiny_result.tokens[0])
    assert len(first["top_ids"]) == len(tiny_result.layers)
    assert len(first["top_ids"][0]) == n_tokens
    assert first["top_ids"][-1][-1] == tiny_result.top_ids[0, -1, n_tokens - 1].tolist()
    assert first["model_top"] == tiny_result.model_top_ids[0, :n_tokens].tolist()
    assert set(first["metrics"]) == {"entropy", "kl", "final_rank"}
    assert first["targets"] == [" current"]


@pytest.fixture(scope="module")
def attributed(tiny_llama):
    """The lens and the direct logit attribution of both prompts, in one trace."""
    return logitlens.analyze(
        tiny_llama,
        [PUN, LITERAL],
        targets=" current",
        alternatives=" water",
        positions="all",
        k=5,
        metrics=["topk", "logit_diff"],
        attribution=True,
    )


def test_attribution_data_is_the_library_attribution(attributed, tiny_llama, tiny_result):
    shown = report_data(attributed)["attribution"]
    # An independent run: attribute() at each prompt's last position, its own trace.
    expected = logitlens.attribute(
        tiny_llama, [PUN, LITERAL], target=" current", alternative=" water"
    )
    assert len(shown) == 2
    for prompt, item in enumerate(shown):
        assert item["position"] == len(attributed.tokens[prompt]) - 1
        assert (item["target"], item["alternative"]) == (" current", " water")
        assert set(item["measures"]) == {"target", "difference"}
        for name, drawn in item["measures"].items():
            parts = expected.measure(name)
            np.testing.assert_allclose(
                drawn["attention"], parts.attention[prompt, :, 0, 0], atol=1e-5
            )
            np.testing.assert_allclose(drawn["mlp"], parts.mlp[prompt, :, 0, 0], atol=1e-5)
            for key in ("embed", "constant", "logit"):
                assert drawn[key] == pytest.approx(
                    float(getattr(parts, key)[prompt, 0, 0]), abs=1e-5
                )
            # The parts the page draws sum to the model's own value it states.
            total = drawn["embed"] + sum(drawn["attention"]) + sum(drawn["mlp"]) + drawn["constant"]
            assert total == pytest.approx(drawn["logit"], abs=1e-4)
    assert "attribution" not in report_data(tiny_result)
    # Mixed: one result with and one without, aligned with the entries.
    mixed = report_data([tiny_result, attributed])["attribution"]
    assert mixed[:2] == [None, None] and mixed[2:] == shown


def test_page_is_self_contained_and_escapes_tokens(tiny_result):
    result = tiny_result.subset([0])
    result.vocab = {**result.vocab, int(result.top_ids[0, 0, 0, 0]): "</script><b>x"}
    page = render_report(result, title="Puns <&>")
    assert "<title>Puns &lt;&amp;&gt;</title>" in page
    assert "</script><b>" not in page
    # Nothing is fetched: no external scripts, styles or images.
    assert not re.search(r"<(script|img|link)[^>]*(src|href)=", page)
    assert page.count("<script") == 2


def test_needs_topk_and_checks_path(tiny_result, tmp_path):
    no_topk = tiny_result.subset([0])
    no_topk.top_ids = None
    with pytest.raises(InputError, match="topk"):
        report_data(no_topk)
    with pytest.raises(InputError, match="does not exist"):
        write_report(tiny_result, tmp_path / "missing" / "r.html")
    with pytest.raises(InputError, match=r"\.html"):
        write_report(tiny_result, tmp_path / "r.png")


# ----- the page in a real browser ----------------------------------------------------------


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        "--remote-debugging-port=0",
    )

    def __init__(self, profile: Path) -> None:
        import websocket

        port_file = profile / "DevToolsActivePort"
        self.process = subprocess.Popen(
            [shutil.which("chromium"), *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.time() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError("Chromium did not start its DevTools endpoint.")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in json.load(response) if t["type"] == "page"]
        self.socket = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(e.get("method") == event for e in self.events):
                return
            self.socket.settimeout(max(0.1, deadline - time.time()))
            self.events.append(json.loads(self.socket.recv()))
        raise TimeoutError(event)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def mouse(self, kind: str, x: float, y: float) -> None:
        self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(json.dumps(event["params"]["exceptionDetails"])[:500])
            if event.get("method") == "Runtime.consoleAPICalled" and event["params"]["type"] in (
                "error",
                "assert",
            ):
                found.append(json.dumps(event["params"]["args"])[:500])
            if (
                event.get("method") == "Log.entryAdded"
                and event["params"]["entry"]["level"] == "error"
            ):
                found.append(event["params"]["entry"]["text"])
        return found

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def browser(tmp_path):
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    profile = tmp_path / "profile"
    profile.mkdir()
    chromium = Chromium(profile)
    try:
        for domain in ("Runtime", "Log", "Page"):
            chromium.send(f"{domain}.enable")
        yield chromium
    finally:
        chromium.close()


def _open(browser: Chromium, path: Path) -> None:
    browser.send("Page.navigate", url=path.resolve().as_uri())
    browser.wait_for("Page.loadEventFired")


def _cell_centre(browser: Chromium, layer: int, col: int) -> tuple[float, float]:
    box = browser.evaluate(
        f'(() => {{ const c = document.querySelector(\'td.cell[data-layer="{layer}"]'
        f"[data-col=\"{col}\"]'); c.scrollIntoView({{block: 'center', inline: 'center'}});"
        " const r = c.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
        " })()"
    )
    return box[0], box[1]


_VISIBLE = {" ": "\u2423", "\n": "\u21b5", "\t": "\u21e5", "\r": "\u240d"}


def _shown(text: str) -> str:
    """A token as the grid shows it: whitespace as a visible sign, control bytes as <0x..>."""
    return "".join(
        _VISIBLE.get(c, f"<0x{ord(c):02X}>") if ord(c) <= 0x20 or c == "\x7f" else c for c in text
    )


def _detail_rows(browser: Chromium) -> list[list[str]]:
    return browser.evaluate(
        "[...document.querySelectorAll('#detail tr.topk-row')]"
        ".map(r => [...r.querySelectorAll('td')].slice(0, 3).map(td => td.textContent))"
    )


def test_report_in_browser(browser, tiny_result, tmp_path):
    path = write_report(tiny_result, tmp_path / "report.html", title="Pun report")
    _open(browser, path)
    result = tiny_result
    n_layers = len(result.layers)

    for prompt in (0, 1):
        if prompt:
            browser.evaluate(
                "const s = document.getElementById('prompt-select'); s.value = '1';"
                " s.dispatchEvent(new Event('change'));"
            )
        n_tokens = len(result.tokens[prompt])
        cells = browser.evaluate(
            "[...document.querySelectorAll('td.cell')].map(c =>"
            " [Number(c.dataset.layer), Number(c.dataset.col), c.textContent])"
        )
        assert len(cells) == n_layers * n_tokens
        texts = {(layer, col): text for layer, col, text in cells}
        for layer in range(n_layers):
            for col in range(n_tokens):
                top1 = result.token_text(result.top_ids[prompt, layer, col, 0])
                assert texts[layer, col] == _shown(top1)
        header = browser.evaluate(
            "[...document.querySelectorAll('#grid thead tr:first-child th')]"
            ".slice(1).map(th => th.textContent)"
        )
        assert header == [_shown(t) for t in result.tokens[prompt]]

    # Hover: the detail panel shows that cell's top-k with probabilities.
    layer, col = n_layers - 1, len(result.tokens[1]) - 2
    x, y = _cell_centre(browser, layer, col)
    browser.mouse("mouseMoved", x, y)
    rows = _detail_rows(browser)
    assert [json.loads(r[1]) for r in rows] == [
        result.token_text(i) for i in result.top_ids[1, layer, col]
    ]
    np.testing.assert_allclose(
        [float(r[2]) for r in rows], result.top_probs[1, layer, col], atol=1e-4
    )

    # Click: pins another cell and moves the trajectory to its position.
    layer, col = 0, 1
    x, y = _cell_centre(browser, layer, col)
    browser.mouse("mouseMoved", x, y)
    browser.mouse("mousePressed", x, y)
    browser.mouse("mouseReleased", x, y)
    pinned = browser.evaluate(
        "[...document.querySelectorAll('td.pinned')].map(c => [c.dataset.layer, c.dataset.col])"
    )
    assert pinned == [["0", "1"]]
    rows = _detail_rows(browser)
    assert [json.loads(r[1]) for r in rows] == [
        result.token_text(i) for i in result.top_ids[1, 0, 1]
    ]
    title = browser.evaluate("document.getElementById('trajectory-title').textContent")
    assert "position 1" in title
    assert browser.evaluate("document.querySelectorAll('#trajectory polyline.series').length") == 1

    # Colour by another metric: the grid is redrawn with the same cells.
    browser.evaluate(
        "const m = document.getElementById('metric-select'); m.value = 'kl';"
        " m.dispatchEvent(new Event('change'));"
    )
    assert browser.evaluate("document.querySelectorAll('td.cell').length") == n_layers * len(
        result.tokens[1]
    )

    assert browser.errors() == []

    shot = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
    (tmp_path / "report.png").write_bytes(shot)
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(shot), format="png")
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1])[::7], axis=0)
    assert len(colours) > 20, "the screenshot looks blank"


def _bars(browser: Chromium) -> list[list]:
    return browser.evaluate(
        "[...document.querySelectorAll('#attribution-chart rect.bar')].map(b => [b.dataset.part,"
        " Number(b.dataset.layer), Number(b.dataset.value), Number(b.getAttribute('y')),"
        " Number(b.getAttribute('height'))])"
    )


def _check_bars(bars: list[list], drawn: dict) -> None:
    """Each layer's two bars: the data's values, lengths proportional to them, up when
    positive and down when negative from the zero line (the chart's middle, 102)."""
    assert len(bars) == 2 * len(drawn["attention"])
    largest = max(abs(v) for v in drawn["attention"] + drawn["mlp"])
    for part, layer, value, y, height in bars:
        assert value == pytest.approx(drawn[part][layer], abs=1e-6)
        assert height == pytest.approx(88 * abs(value) / largest, abs=1e-3)
        assert y == pytest.approx(102 - height if value >= 0 else 102, abs=1e-3)


def test_report_draws_the_attribution(browser, attributed, tiny_result, tmp_path):
    data = report_data(attributed)["attribution"]
    _open(browser, write_report(attributed, tmp_path / "attribution.html"))
    visible = "!document.getElementById('attribution-section').hidden"
    assert browser.evaluate(visible)
    # Target minus alternative first, then the target alone; then the second prompt.
    _check_bars(_bars(browser), data[0]["measures"]["difference"])
    assert 'logit(" water")' in browser.evaluate(
        "document.getElementById('attribution-title').textContent"
    )
    browser.evaluate(
        "const a = document.getElementById('attribution-measure'); a.value = 'target';"
        " a.dispatchEvent(new Event('change'));"
    )
    _check_bars(_bars(browser), data[0]["measures"]["target"])
    browser.evaluate(
        "const s = document.getElementById('prompt-select'); s.value = '1';"
        " s.dispatchEvent(new Event('change'));"
    )
    _check_bars(_bars(browser), data[1]["measures"]["target"])
    logit = data[1]["measures"]["target"]["logit"]
    assert f"{logit:.3f}" in browser.evaluate(
        "document.getElementById('attribution-sum').textContent"
    )
    assert browser.errors() == []

    # A report without attribution has no attribution view.
    browser.events.clear()  # the first page's load event
    _open(browser, write_report(tiny_result, tmp_path / "plain.html"))
    assert not browser.evaluate(visible)
    assert _bars(browser) == []
    assert browser.errors() == []


def test_cli_report_with_attribution(tiny_llama, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from logitlens.cli import app, runners

    monkeypatch.setattr(runners, "open_model", lambda *args, **kwargs: tiny_llama)
    runner = CliRunner()
    path = tmp_path / "r.html"
    args = ["report", PUN, "-t", " current", "-a", " water", "--attribution", "-o", str(path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = path.read_text(encoding="utf-8")
    embedded = re.search(r'id="report-data">(.*?)</script>', text, re.S).group(1)
    shown = json.loads(embedded)["attribution"][0]["measures"]["difference"]
    expected = logitlens.attribute(tiny_llama, PUN, target=" current", alternative=" water")
    np.testing.assert_allclose(shown["mlp"], expected.difference.mlp[0, :, 0, 0], atol=1e-5)


@pytest.mark.bundled
def test_report_is_light_for_a_long_prompt(bundled, browser, tmp_path):
    prompt = " ".join(["The quick brown fox jumps over the lazy dog."] * 7)
    result = logitlens.analyze(bundled, prompt, positions="all", metrics=["topk", "final_rank"])
    assert len(result.layers) == 30 and len(result.tokens[0]) >= 64
    path = write_report(result, tmp_path / "long.html")
    assert path.stat().st_size < 1_500_000
    start = time.time()
    _open(browser, path)
    cells = browser.evaluate("document.querySelectorAll('td.cell').length")
    assert cells == 30 * len(result.tokens[0])
    assert time.time() - start < 5
    assert browser.errors() == []
