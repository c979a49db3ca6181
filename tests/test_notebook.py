"""The puns notebook runs top to bottom on the bundled model, and its plots appear."""

from __future__ import annotations

from pathlib import Path

import pytest

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


def test_notebook_mentions_ndif():
    text = NOTEBOOK.read_text(encoding="utf-8")
    assert "meta-llama/Llama-3.1-70B" in text and "remote=True" in text and "api_key" in text
