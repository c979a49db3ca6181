"""Results as interactive views inline in notebooks: the HTML each result gives Jupyter,
rendered in Debian's Chromium (Playwright) and read back against the result itself."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import page_checks
import pytest
from page_checks import launched

import logitlens
from logitlens import InputError
from logitlens.evaluation import LensEvaluation, Scoreboard
from logitlens.pictures.notebook import view_html, view_page

PUN = "Why do electricians make good swimmers? Because they know the"
LITERAL = "Electricians work with wires that carry electrical"


@pytest.fixture(scope="module")
def result(shared_tiny):
    return logitlens.analyze(shared_tiny, [PUN, LITERAL], targets=" current", positions="all", k=5)


@pytest.fixture(scope="module")
def board():
    return Scoreboard(
        LensEvaluation(
            model_name="tiny",
            layers=[-1, 0, 1, 2],
            lenses=["logit", "raw"],
            kl={"logit": [5.0, 3.0, 1.0, 0.0], "raw": [6.0, 4.0, 2.5, float("nan")]},
            cross_entropy={"logit": [6.0, 5.0, 4.0, 3.0], "raw": [7.0, 6.0, 5.0, 4.0]},
            tokens=100,
            top1_agreement={"logit": [0.0, 0.2, 0.5, 1.0], "raw": [0.0, 0.1, 0.3, 0.9]},
        )
    )


@pytest.fixture(scope="module")
def chromium():
    with launched() as browser:
        yield browser


def framed(html_output: str) -> str:
    """The page inside a view's iframe."""
    match = re.search(r'srcdoc="([^"]*)"', html_output)
    assert match, html_output[:200]
    return html.unescape(match.group(1))


def test_results_render_as_their_view(result, shared_tiny, board):
    output = result._repr_html_()
    assert output.startswith('<div class="logitlens-view"><iframe')
    assert 'sandbox="allow-scripts' in output
    page = framed(output)
    assert 'id="report-data"' in page and PUN in page
    assert not re.search(r"<(script|img|link|iframe)[^>]*(src|href)=", page)  # no network
    generation = logitlens.generate_lens(shared_tiny, PUN, max_new_tokens=3)
    assert 'id="report-data"' in framed(generation._repr_html_())
    assert 'id="scoreboard-data"' in framed(board._repr_html_())
    assert 'id="scoreboard-data"' in framed(board.evaluation._repr_html_())


def test_a_study_summary_renders_as_its_report():
    from test_stats import _study

    from logitlens.studies.stats import summarize_study

    summary = summarize_study(_study(), n_boot=50)
    assert "<svg" in framed(summary._repr_html_())


def test_what_cannot_be_drawn_keeps_its_plain_repr(result):
    no_topk = result.subset([0])
    no_topk.top_ids = None
    assert no_topk._repr_html_() is None
    with pytest.raises(InputError, match="show\\(\\) draws"):
        view_page(42)


def test_show_displays_the_view(result, monkeypatch):
    display = pytest.importorskip("IPython.display")
    shown = []
    monkeypatch.setattr(display, "display", shown.append)
    logitlens.show(result, height=500)
    assert len(shown) == 1 and "height: 500px" in shown[0].data
    assert framed(shown[0].data) == framed(view_html(result))


def test_the_view_in_a_browser_is_the_result(chromium, result, board):
    page = chromium.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.set_content(f"<h1>notebook</h1>{view_html([result.subset([1]), result])}")
    frame = page.frame_locator(".logitlens-view iframe")
    frame.locator("td.cell").first.wait_for()
    inner = page.frames[1]
    page_checks.check_grid(inner, result.subset([1]))
    inner.select_option("#prompt-select", "2")  # the second result's LITERAL prompt
    page_checks.check_grid(inner, result, prompt=1)
    inner.hover('td.cell[data-layer="0"][data-col="2"]')
    probs = inner.eval_on_selector_all(
        "#detail tr.topk-row td.prob", "cells => cells.map(c => Number(c.textContent))"
    )
    np.testing.assert_allclose(probs, result.top_probs[1, 0, 2], atol=1e-4)

    page.set_content(view_html(board))
    inner = page.frames[1]
    inner.locator("#summary tr.lens-row").first.wait_for()
    rows = inner.eval_on_selector_all(
        "#summary tr.lens-row", "rows => rows.map(r => r.firstChild.textContent)"
    )
    summary = board.summary()
    assert sorted(rows) == sorted(summary)
    inner.click('#summary th[data-column="kl"]')
    rows = inner.eval_on_selector_all(
        "#summary tr.lens-row", "rows => rows.map(r => r.firstChild.textContent)"
    )
    assert rows == sorted(summary, key=lambda lens: summary[lens]["kl"])
    assert inner.locator("#chart polyline.series").count() == 2
    data = json.loads(inner.text_content("#scoreboard-data"))
    assert data["kl"]["raw"][3] is None  # NaN travels as null
    assert problems == []
    page.close()
