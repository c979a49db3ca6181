"""``logitlens attribute``: table, --json and --plot, against the library's numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from logitlens import InputError
from logitlens.analysis import attribute
from logitlens.cli import app, runners
from logitlens.pictures.attribution_plots import plot_attribution, plot_components, plot_heads

PUN = "Why do electricians make good swimmers? Because they know the"


@pytest.fixture
def tiny_gpt2(wrap_tiny):
    return wrap_tiny("gpt2")


@pytest.fixture
def cli(tiny_gpt2, monkeypatch):
    monkeypatch.setattr(runners, "open_model", lambda *args, **kwargs: tiny_gpt2)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_json_is_the_library_result(cli, tiny_gpt2):
    result = cli(
        "attribute", PUN, "--target", " current", "--alternative", " the", "--heads", "--json"
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    expected = attribute(tiny_gpt2, PUN, target=" current", alternative=" the", heads=True)
    np.testing.assert_allclose(
        np.array(payload["difference"]["components"], dtype=float), expected.difference.components
    )
    np.testing.assert_allclose(
        np.array(payload["target"]["heads"], dtype=float), expected.target.heads
    )
    assert payload["dims"]["heads"] == ["prompt", "layer", "head", "position", "target"]


def test_table_sums_to_the_logit_and_lists_heads(cli, tiny_gpt2):
    result = cli("attribute", PUN, "--target", " current", "--heads", "--top-heads", "3")
    assert result.exit_code == 0, result.output
    expected = attribute(tiny_gpt2, PUN, target=" current")
    assert f"{expected.target.logit[0, 0, 0]:+.3f}" in result.output
    assert "Top 3 heads" in result.output
    assert "sum = logit" in result.output


def test_plot_is_written(cli, tmp_path):
    path = tmp_path / "dla.png"
    result = cli("attribute", PUN, "--target", " current", "--heads", "--plot", str(path))
    assert result.exit_code == 0, result.output
    assert path.stat().st_size > 1000


def test_bad_plot_path_fails_before_the_model_runs(cli, tmp_path):
    result = cli("attribute", PUN, "--target", " current", "--plot", str(tmp_path / "x.txt"))
    assert isinstance(result.exception, InputError), result.output
    assert "end the name with one of" in str(result.exception)


def test_plots_draw_what_they_are_given(tiny_gpt2):
    result = attribute(tiny_gpt2, PUN, target=" current", alternative=" the", heads=True)
    bars = plot_components(result, measure="difference")
    heights = sorted(patch.get_height() for patch in bars.axes[0].patches)
    expected = sorted(
        [*result.difference.components[0, :, :, 0, 0].ravel(), result.difference.embed[0, 0, 0]]
    )
    np.testing.assert_allclose(heights, expected, rtol=1e-6)
    heatmap = plot_heads(result)
    np.testing.assert_allclose(
        heatmap.axes[0].images[0].get_array(), result.target.heads[0, :, :, 0, 0]
    )
    assert len(plot_attribution(result).axes) == 3  # bars, heatmap, colour bar
