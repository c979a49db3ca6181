"""``logitlens serve`` on the bundled model, driven in Debian's Chromium through Playwright.

The server is the real command in a subprocess on 127.0.0.1 (a free port); the page is
typed into and hovered like a user would. Every number the page shows is checked against
the library's own ``analyze`` here, and the screenshot's pixels against the grid's colour
scale. Nothing is downloaded: Playwright drives the system browser by its path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import page_checks
import pytest
from page_checks import grid_colour, launched, serving

import logitlens
from logitlens import InputError, LogitLensError
from logitlens.lenses import TunedLens

PUN = "Why do electricians make good swimmers? Because they know the"
LITERAL = "Electricians work with wires that carry electrical"
pytestmark = pytest.mark.bundled


@pytest.fixture(scope="module")
def foreign_lens(tmp_path_factory):
    """A tuned-lens file made for a tiny random model, not for SmolLM2."""
    from tiny_models import tiny_model

    hf_model, tokenizer = tiny_model("llama")
    tiny = logitlens.load_model(hf_model, tokenizer=tokenizer)
    return TunedLens.identity(tiny).save(tmp_path_factory.mktemp("lens") / "tiny.safetensors")


@pytest.fixture(scope="module")
def server(foreign_lens):
    """``logitlens serve`` with the foreign lens file; yields the page's address."""
    with serving("--lens-path", str(foreign_lens)) as (address, _):
        yield address


@pytest.fixture(scope="module")
def browser():
    with launched() as chromium:
        yield chromium


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1500, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.on(
        "console", lambda m: m.type == "error" and page.problems.append(m.text)
    )  # a 400 is logged as a failed resource: those are expected below, filtered there
    page.goto(server)
    page.wait_for_function("() => document.querySelectorAll('#lens option').length > 0")
    yield page
    context.close()


def ask(page, prompts: list[str], lens: str, target: str = "", alternative: str = "") -> None:
    """Fill the form as a user does and wait for the answer (or the error)."""
    page.fill("#prompts", "\n".join(prompts))
    page.select_option("#lens", lens)
    page.fill("#target", target)
    page.fill("#alternative", alternative)
    page.click("#run")
    page.wait_for_function("() => !document.getElementById('run').disabled", timeout=120_000)


def check_grid(page, expected) -> None:
    """Every cell is the library's top-1 token; the page says no error."""
    assert page.is_hidden("#error"), page.text_content("#error")
    page_checks.check_grid(page, expected, byte_labels=True)


def check_hover(page, expected, layer: int, col: int) -> None:
    """Hovering a cell shows its top-k tokens and probabilities, as the library has them."""
    cell = page.locator(f'td.cell[data-layer="{layer}"][data-col="{col}"]')
    cell.scroll_into_view_if_needed()
    cell.hover()
    rows = page.eval_on_selector_all(
        "#detail tr.topk-row",
        "rs => rs.map(r => [...r.querySelectorAll('td')].slice(1, 3).map(td => td.textContent))",
    )
    assert [json.loads(token) for token, _ in rows] == [
        expected.token_text(i) for i in expected.top_ids[0, layer, col]
    ]
    np.testing.assert_allclose(
        [float(p) for _, p in rows], expected.top_probs[0, layer, col], atol=1e-4
    )


def library(bundled, lens: str, prompts=PUN, **kwargs):
    return logitlens.analyze(
        bundled,
        prompts,
        lens=lens,
        positions="all",
        metrics=["topk", "final_rank", *(["target_rank"] if "targets" in kwargs else [])],
        **kwargs,
    )


def test_the_explorer_shows_what_the_library_computes(page, bundled, tmp_path):
    # The logit lens, the pun and its target: grid, hover, trajectory, colours.
    ask(page, [PUN], "logit", " current", " water")
    expected = library(bundled, "logit", targets=" current", alternatives=" water")
    check_grid(page, expected)
    last_layer, last_col = len(expected.layers) - 1, len(expected.tokens[0]) - 1
    check_hover(page, expected, last_layer, last_col)
    check_hover(page, expected, 10, 4)
    assert page.locator("#trajectory polyline.series").count() == 1

    # The screenshot's pixels are the colour scale of the top-1 probability.
    shot_path = tmp_path / "explorer.png"
    page.mouse.move(0, 0)
    page.screenshot(path=str(shot_path))
    import matplotlib.image

    pixels = matplotlib.image.imread(shot_path)[..., :3] * 255
    for layer, col in [(last_layer, last_col), (0, 0), (20, 6), (last_layer, 2)]:
        box = page.locator(f'td.cell[data-layer="{layer}"][data-col="{col}"]').bounding_box()
        x, y = int(box["x"] + 3), int(box["y"] + 2)  # inside the padding, off the text
        np.testing.assert_allclose(
            pixels[y, x], grid_colour(expected.top_probs[0, layer, col, 0]), atol=3
        )

    # The trajectory of the target at the last position, on the linear and the log axis
    # (top 12, bottom 200 in the chart's coordinates; log: 1e-6 to 1).
    page.click(f'td.cell[data-layer="0"][data-col="{last_col}"]')
    points = "() => document.querySelector('#trajectory polyline.series').getAttribute('points')"
    probs = expected.target_prob[0, :, last_col, 0]
    linear = [float(p.split(",")[1]) for p in page.evaluate(points).split()]
    np.testing.assert_allclose(linear, 200 - 188 * probs / max(0.1, probs.max()), atol=0.5)
    page.check("#log-scale")
    logarithmic = [float(p.split(",")[1]) for p in page.evaluate(points).split()]
    floor = np.log10(np.maximum(probs, 1e-6))
    np.testing.assert_allclose(logarithmic, 200 - 188 * (floor + 6) / 6, atol=0.5)
    assert "log scale" in page.text_content("#trajectory-title")

    # Downloads: the JSON is the library's result; the HTML report holds the same data.
    with page.expect_download() as download:
        page.click("#download-json")
    data = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    np.testing.assert_array_equal(np.array(data["top_ids"]), expected.top_ids)
    with page.expect_download() as download:
        page.click("#download-html")
    report = Path(download.value.path()).read_text(encoding="utf-8")
    assert '<script type="application/json" id="report-data">' in report
    assert not re.search(r"<(script|img|link)[^>]*(src|href)=", report)  # nothing fetched

    # The attribution view: each layer's attention and MLP part of target minus alternative.
    page.check("#attribution")
    ask(page, [PUN], "logit", " current", " water")
    parts = logitlens.attribute(bundled, PUN, target=" current", alternative=" water").difference
    bars = page.eval_on_selector_all(
        "#attribution-chart rect.bar",
        "bars => bars.map(b => [b.dataset.part, +b.dataset.layer, +b.dataset.value])",
    )
    shown = {(part, layer): value for part, layer, value in bars}
    assert len(shown) == 2 * len(expected.layers)
    for layer in range(len(expected.layers)):
        assert shown["attention", layer] == pytest.approx(parts.attention[0, layer, 0, 0], abs=1e-4)
        assert shown["mlp", layer] == pytest.approx(parts.mlp[0, layer, 0, 0], abs=1e-4)
    assert f"{float(parts.logit[0, 0, 0]):.3f}" in page.text_content("#attribution-sum")
    page.uncheck("#attribution")

    # The raw lens, two prompts side by side.
    shared_before = page.url
    ask(page, [PUN, LITERAL], "raw", " current")
    raw = library(bundled, "raw", [PUN, LITERAL], targets=" current")
    check_grid(page, raw)
    check_hover(page, raw, 15, 3)
    assert page.locator("#compare tr.compare-row").count() == 2
    page.click("#compare tr.compare-row >> nth=1")
    assert page.input_value("#prompt-select") == "1"
    assert page.url != shared_before and "lens=raw" in page.url

    # The address is the state: opened anew, it shows the same analysis.
    other = page.context.new_page()
    other.goto(page.url)
    other.wait_for_selector("td.cell")
    other.wait_for_function("() => !document.getElementById('run').disabled")
    assert other.input_value("#lens") == "raw"
    assert other.input_value("#prompts") == f"{PUN}\n{LITERAL}"
    check_grid(other, raw)
    other.close()

    assert page.problems == []


def test_bad_inputs_are_messages_and_the_server_keeps_serving(page, bundled, foreign_lens):
    long_prompt = "word " * (bundled.context_length + 10)
    with pytest.raises(InputError) as too_long:
        logitlens.analyze(bundled, long_prompt)
    with pytest.raises(InputError) as bad_target:
        logitlens.analyze(bundled, PUN, targets=99_999_999)
    with pytest.raises(LogitLensError) as other_model:
        logitlens.analyze(bundled, PUN, lens="tuned", tuned_path=str(foreign_lens))
    with pytest.raises(InputError) as empty:
        logitlens.analyze(bundled, [])
    cases = [
        (["   "], "logit", "", str(empty.value)),
        ([PUN], "logit", "id:99999999", str(bad_target.value)),
        ([long_prompt], "logit", "", str(too_long.value)),
        ([PUN], "tuned", "", str(other_model.value)),
    ]
    expected = library(bundled, "logit")
    for prompts, lens, target, message in cases:
        ask(page, prompts, lens, target)
        assert page.is_visible("#error")
        assert page.text_content("#error") == " ".join(message.split())
        ask(page, [PUN], "logit")
        check_grid(page, expected)
    # The failed requests are the only errors the browser saw: 400 responses.
    assert page.problems and all("400" in problem for problem in page.problems)
