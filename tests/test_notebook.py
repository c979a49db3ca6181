"""The puns notebook runs top to bottom on the bundled model, and its plots appear."""

from __future__ import annotations

from pathlib import Path

import pytest
from page_checks import check_grid, launched

PUN = "Why do electricians make good swimmers? Because they know the"
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "logit_lens_puns.ipynb"


@pytest.mark.bundled
def test_notebook_runs_and_shows_its_plots(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    # The notebook chooses the inline backend itself; a headless default must not win.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    plot_cells = [c for c in notebook.cells if c.cell_type == "code" and "plots.plot_" in c.source]
    assert len(images) >= len(plot_cells) >= 8
    for cell in plot_cells:
        assert any("image/png" in out.get("data", {}) for out in cell.outputs), cell.source
    assert (tmp_path / "pun_report.html").is_file()
    check_inline_view(notebook)


def check_inline_view(notebook) -> None:
    """The `logitlens.show(contexts)` cell's HTML, rendered in Chromium, is the result."""
    import logitlens

    cell = next(c for c in notebook.cells if c.source.strip() == "logitlens.show(contexts)")
    html = [out["data"]["text/html"] for out in cell.outputs if "text/html" in out.get("data", {})]
    assert len(html) == 1 and "<iframe" in html[0]
    contexts = logitlens.analyze(  # the notebook's own call
        logitlens.load_model(),
        [PUN, "Electricians work with wires that carry electrical"],
        targets=" current",
        positions="all",
        metrics=["topk", "entropy", "kl", "final_rank"],
    )
    with launched() as browser:
        page = browser.new_page()
        problems = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.set_content(html[0])
        page.frame_locator("iframe").locator("td.cell").first.wait_for()
        frame = page.frames[1]
        check_grid(frame, contexts)
        frame.select_option("#prompt-select", "1")
        check_grid(frame, contexts, prompt=1)
        page.close()
    assert problems == []


def test_notebook_mentions_ndif():
    text = NOTEBOOK.read_text(encoding="utf-8")
    assert "meta-llama/Llama-3.1-70B" in text and "remote=True" in text and "api_key" in text
