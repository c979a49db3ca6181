"""Plots show the result's data: line values, heatmap arrays, grid cell texts, labels."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib import pyplot as plt
from typer.testing import CliRunner

import logitlens
from logitlens import InputError, paths
from logitlens.cli import app
from logitlens.errors import OutputError
from logitlens.pictures import plots

PUN = "Why do electricians make good swimmers? Because they know the"
LITERAL = "Electricians work with wires that carry electrical"
CAPITAL = "The capital of France is"
ALL_METRICS = ["topk", "target_rank", "entropy", "kl", "final_rank", "next_token_ce"]


@pytest.fixture(scope="module")
def pun_all(shared_tiny):
    return logitlens.analyze(
        shared_tiny,
        PUN,
        targets=" current",
        alternatives=" the",
        positions="all",
        k=5,
        metrics=ALL_METRICS,
    )


@pytest.fixture(scope="module")
def puns(shared_tiny):
    return logitlens.analyze(
        shared_tiny, [PUN, LITERAL, CAPITAL], targets=[" current", " current", " Paris"]
    )


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _tick_texts(labels) -> list[str]:
    return [t.get_text() for t in labels]


# ----- trajectories -----------------------------------------------------------------------


def test_trajectory_line_matches_result(pun_all):
    fig = plots.plot_trajectory(pun_all, threshold=0.1)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), pun_all.trajectory("target_prob"))
    threshold = [line for line in ax.lines if list(line.get_ydata()) == [0.1, 0.1]]
    assert threshold, "the 0.1 threshold line is drawn"
    assert PUN in ax.get_title() and '" current"' in ax.get_title()
    assert "logit lens" in ax.get_title()
    assert ax.get_ylabel() == 'P(" current")' and ax.get_xlabel() == "Layer"
    legend = _legend_texts(ax)
    assert "threshold 0.1" in legend
    summary = pun_all.target_summary(0.1)
    if summary.first_layer_top1 is None:
        assert "never top-1" in legend


def test_trajectory_marks_first_top1_layer(pun_all):
    result = pun_all.subset([0])
    result.target_rank = result.target_rank.copy()
    result.target_rank[0, :, -1, 0] = 5
    result.target_rank[0, 1:, -1, 0] = 1
    ax = plots.plot_trajectory(result).axes[0]
    marker = [line for line in ax.lines if line.get_linestyle() == ":"]
    assert len(marker) == 1 and list(marker[0].get_xdata()) == [1, 1]
    assert "first top-1: layer 1" in _legend_texts(ax)


def test_trajectory_log_scale(pun_all):
    assert plots.plot_trajectory(pun_all, log=True).axes[0].get_yscale() == "log"


def test_comparison_of_several_puns(puns):
    ax = plots.plot_comparison(puns).axes[0]
    assert len(ax.lines) == 3
    for prompt, line in enumerate(ax.lines):
        np.testing.assert_allclose(line.get_ydata(), puns.trajectory("target_prob", prompt))
    legend = _legend_texts(ax)
    assert legend[0].startswith('"current"') and legend[2].startswith('"Paris"')
    assert "Comparing" in ax.get_title() and "logit lens" in ax.get_title()


def test_pun_versus_literal_context(puns):
    ax = plots.plot_comparison(
        puns, prompts=[0, 1], labels=["Pun context", "Literal context"]
    ).axes[0]
    assert _legend_texts(ax) == ["Pun context", "Literal context"]
    np.testing.assert_allclose(ax.lines[1].get_ydata(), puns.trajectory("target_prob", 1))
    assert ax.get_ylabel() == 'P(" current")'
    assert '" current"' in ax.get_title()
    with pytest.raises(InputError, match="one label per prompt"):
        plots.plot_comparison(puns, prompts=[0, 1], labels=["only one"])


def test_lens_comparison(shared_tiny):
    by_lens = {
        lens: logitlens.analyze(shared_tiny, PUN, targets=" current", lens=lens)
        for lens in ("logit", "raw")
    }
    ax = plots.plot_lenses(list(by_lens.values())).axes[0]
    assert _legend_texts(ax)[:2] == ["logit lens", "raw lens"]
    for line, result in zip(ax.lines, by_lens.values(), strict=False):
        np.testing.assert_allclose(line.get_ydata(), result.trajectory("target_prob"))
    assert "logit, raw" in ax.get_title() and PUN in ax.get_title()
    other = logitlens.analyze(shared_tiny, LITERAL, targets=" current", lens="raw")
    with pytest.raises(InputError, match="another prompt or target"):
        plots.plot_lenses({"logit": by_lens["logit"], "raw": other})


# ----- heatmap and grid -----------------------------------------------------------------


def test_heatmap_array_and_token_axis(pun_all):
    ax = plots.plot_heatmap(pun_all).axes[0]
    n_tokens = len(pun_all.tokens[0])
    np.testing.assert_allclose(ax.images[0].get_array(), pun_all.target_prob[0, :, :n_tokens, 0])
    assert _tick_texts(ax.get_xticklabels()) == pun_all.tokens[0]
    assert _tick_texts(ax.get_yticklabels()) == pun_all.layer_labels
    assert PUN in ax.get_title() and '" current"' in ax.get_title()
    assert "logit lens" in ax.get_title()


def test_heatmap_needs_a_target(shared_tiny):
    result = logitlens.analyze(shared_tiny, PUN, positions="all")
    with pytest.raises(InputError, match="--target"):
        plots.plot_heatmap(result)


@pytest.mark.parametrize("metric", list(plots.GRID_METRICS))
def test_grid_cells_show_top1_and_colour_by_metric(pun_all, metric):
    ax = plots.plot_grid(pun_all, metric=metric).axes[0]
    n_layers, n_tokens = len(pun_all.layers), len(pun_all.tokens[0])
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(texts) == n_layers * n_tokens
    for layer in range(n_layers):
        for col in range(n_tokens):
            top1 = pun_all.top_ids[0, layer, col, 0]
            cell = texts[layer, col]
            assert cell.get_text() == plots.token_label(pun_all.token_text(top1), 8)
            is_model_token = top1 == pun_all.model_top_ids[0, col]
            assert (cell.get_fontweight() == "bold") == is_model_token
    expected = {
        "prob": pun_all.top_probs[0, :, :n_tokens, 0],
        "final_rank": pun_all.final_rank[0, :, :n_tokens],
        "entropy": pun_all.entropy[0, :, :n_tokens],
        "kl": pun_all.kl[0, :, :n_tokens],
        "logit_diff": pun_all.logit_diff[0, :, :n_tokens, 0],
        "next_token_ce": pun_all.next_token_ce[0, :, :n_tokens],
    }[metric]
    np.testing.assert_allclose(ax.images[0].get_array(), expected)
    assert _tick_texts(ax.get_xticklabels()) == pun_all.tokens[0]
    assert plots.GRID_METRICS[metric].label in ax.get_title() and PUN in ax.get_title()
    top_axis = next(child for child in ax.get_children() if hasattr(child, "get_xticklabels"))
    next_tokens = [
        plots.token_label(pun_all.token_text(i), 8) for i in pun_all.model_top_ids[0, :n_tokens]
    ]
    assert _tick_texts(top_axis.get_xticklabels()) == next_tokens


def test_grid_missing_metric_names_the_flag(shared_tiny):
    result = logitlens.analyze(shared_tiny, PUN, positions="all")
    with pytest.raises(InputError, match=r"--metrics kl"):
        plots.plot_grid(result, metric="kl")
    with pytest.raises(InputError, match="choose from"):
        plots.plot_grid(result, metric="loss")
    # Without the model's own prediction the grid is drawn, just unmarked.
    ax = plots.plot_grid(result).axes[0]
    assert all(t.get_fontweight() != "bold" for t in ax.texts)


def test_special_characters_are_shown_as_text(pun_all):
    result = pun_all.subset([0])
    top1 = int(result.top_ids[0, 0, 0, 0])
    result.vocab = {**result.vocab, top1: "$x$\n"}
    ax = plots.plot_grid(result).axes[0]
    assert "$x$\\n" in [t.get_text() for t in ax.texts]
    ax.figure.canvas.draw()


# ----- saving -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_save_figure_writes_the_file(pun_all, tmp_path, suffix):
    path = plots.save_figure(plots.plot_trajectory(pun_all), tmp_path / f"t{suffix}")
    head = path.read_bytes()[:200]
    assert head.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in path.read_bytes()
    assert path == tmp_path / f"t{suffix}"


def test_save_errors_are_clear(pun_all, tmp_path, monkeypatch):
    fig = plots.plot_trajectory(pun_all)
    with pytest.raises(InputError, match=r"does not exist.*mkdir -p"):
        plots.save_figure(fig, tmp_path / "missing" / "t.png")
    with pytest.raises(InputError, match=r"\.png, \.svg, \.pdf"):
        plots.save_figure(fig, tmp_path / "t.jpeg")

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(paths.tempfile, "mkstemp", refused)  # the probe file cannot be made
    with pytest.raises(OutputError, match="no permission: choose a directory you can write to"):
        plots.save_figure(fig, tmp_path / "t.png")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_directory(pun_all, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(InputError, match="No permission"):
        plots.save_figure(plots.plot_trajectory(pun_all), locked / "t.png")


# ----- CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli(shared_tiny, monkeypatch):
    """Run the CLI on the shared_tiny model; returns ``run(*args) -> Result``."""
    from logitlens.cli import runners

    monkeypatch.setattr(runners, "open_model", lambda *args, **kwargs: shared_tiny)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=True)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["heatmap", PUN, "--target", " current"], "heatmap.png"),
        (["grid", PUN, "--metric", "entropy"], "grid.svg"),
        (["track", PUN, "--target", " current"], "track.png"),
        (["top", PUN], "top.png"),
        (["compare", "--pair", f"{PUN}=> current", "--pair", f"{LITERAL}=> current"], "c.png"),
        (["report", PUN, LITERAL, "--target", " current"], "report.html"),
    ],
)
def test_cli_writes_pictures_and_prints_the_path(cli, tmp_path, args, name):
    path = tmp_path / name
    option = "--plot" if args[0] in ("track", "top", "compare") else "--out"
    result = cli(*args, option, str(path))
    assert result.exit_code == 0, result.output
    assert path.is_file() and path.stat().st_size > 1000
    assert str(path) in result.output.replace("\n", "")


def test_cli_checks_the_path_before_running(cli, tmp_path, monkeypatch):
    from logitlens.cli import runners

    def fail(*args, **kwargs):
        raise AssertionError("analysis ran before the output path was checked")

    monkeypatch.setattr(runners, "open_model", fail)
    result = cli("grid", PUN, "--out", str(tmp_path / "nope" / "grid.png"))
    assert isinstance(result.exception, InputError)
    assert "does not exist" in str(result.exception)
    result = cli("grid", PUN, "--metric", "loss", "--out", str(tmp_path / "grid.png"))
    assert "choose from" in str(result.exception)


def test_cli_json_stays_clean_with_plot(cli, tmp_path):
    import json

    path = tmp_path / "t.png"
    result = CliRunner().invoke(
        app, ["track", PUN, "--target", " current", "--json", "--plot", str(path)]
    )
    assert result.exit_code == 0
    json.loads(result.stdout)
    assert path.is_file()


@pytest.mark.bundled
def test_readme_pictures_script(tmp_path):
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_readme_pictures.py"
    spec = importlib.util.spec_from_file_location("make_readme_pictures", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.main(tmp_path)
    assert [p.name for p in written] == ["pun_trajectory.png", "pun_heatmap.png", "pun_grid.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
