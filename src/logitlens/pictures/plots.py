"""Pictures of lens results: trajectories, comparisons, heatmaps and the logit-lens grid.

Every function takes a :class:`~logitlens.results.LensResult` (computed beforehand by
:func:`logitlens.analyze`) and returns a matplotlib ``Figure``; nothing here runs a model.
Save with :func:`save_figure` (PNG, SVG or PDF, chosen by the suffix).

Example:
    >>> result = analyze(model, PUN, targets=" current")
    >>> save_figure(plot_trajectory(result), "pun.png")
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colors as mcolors
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import InputError
from ..evaluation import LensEvaluation, Scoreboard
from ..metrics import PICTURES, Picture
from ..metrics import picture as grid_metric
from ..options import MAX_PICTURE_POSITIONS
from ..paths import FIGURE_SUFFIXES, check_document_output, check_output_path
from ..results import LensResult
from ..storage import MARKER, write_atomic

if TYPE_CHECKING:
    from ..generation import GenerationResult
    from ..studies.stats import StudyComparison, StudySummary

GridMetric = Picture
"""How one grid metric is read from a result and coloured (a metric's picture)."""

GRID_METRICS: dict[str, GridMetric] = PICTURES
"""Metrics that can colour :func:`plot_grid`, by name (from the metric registry)."""


# ----- text helpers -------------------------------------------------------------------


def token_label(text: str, width: int | None = None) -> str:
    """A token as shown in a picture: newlines and tabs visible, optionally shortened."""
    shown = text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    if width is not None and len(shown) > width:
        shown = shown[: width - 1] + "…"
    return shown


def _plain(text: str) -> str:
    """Text safe from matplotlib's mathtext (a pair of ``$`` would start a formula)."""
    return text.replace("$", r"\$")


def _quoted(prompt: str, width: int = 90) -> str:
    return _plain("\n".join(textwrap.wrap(f'"{token_label(prompt)}"', width)) or '""')


def _axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


def _probability_axis(ax: Axes, log: bool) -> None:
    """Linear from 0 (thresholds read naturally) or log (small models' tiny values)."""
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)


def _layer_axis(ax: Axes, result: LensResult) -> None:
    """Layer numbers on the x axis, at most ~16 labelled ticks."""
    step = max(1, int(np.ceil(len(result.layers) / 16)))
    ticks = list(range(0, len(result.layers), step))
    ax.set_xticks(ticks, [result.layer_labels[i] for i in ticks])
    ax.set_xlabel("Layer")


def _finish_trajectory(
    fig: Figure, ax: Axes, result: LensResult, log: bool, target_text: str, title: str
) -> Figure:
    """The furniture of a target-probability-by-layer picture: axes, labels, legend."""
    _layer_axis(ax, result)
    _probability_axis(ax, log)
    ax.set_ylabel(f'P("{target_text}")')
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


# ----- saving ---------------------------------------------------------------------------


def save_figure(
    fig: Figure, path: str | Path, dpi: int = 150, close: bool = True, *, force: bool = False
) -> Path:
    """Write ``fig`` to ``path`` (.png, .svg or .pdf) and return the path written.

    An existing file that logitlens did not write is never replaced unless ``force``.
    """
    try:
        path = check_document_output(path, FIGURE_SUFFIXES, "picture", force=force)
        kind = path.suffix[1:].lower()
        metadata = {"Software" if kind == "png" else "Creator": MARKER}
        write_atomic(
            path,
            lambda temporary: fig.savefig(
                temporary, dpi=dpi, bbox_inches="tight", format=kind, metadata=metadata
            ),
        )
    finally:
        if close:
            plt.close(fig)
    return path


# ----- trajectories -------------------------------------------------------------------


def plot_trajectory(
    result: LensResult,
    prompt: int = 0,
    position: int = -1,
    target: int = 0,
    threshold: float = 0.1,
    log: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Probability of a target across layers, with the threshold and first top-1 layer.

    The notebook's "when does the model get the pun?" line; ``log=True`` puts the
    probability on a log scale.
    """
    probs = result.trajectory("target_prob", prompt, position, target)
    summary = result.target_summary(threshold, prompt, position, target)
    fig, ax = _axes(ax, (10, 4.5))
    target_text = token_label(summary.target)
    x = np.arange(len(result.layers))
    ax.plot(x, probs, "-o", markersize=3, color="tab:blue", label=f'P("{_plain(target_text)}")')
    ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold}")
    if summary.first_layer_top1 is not None:
        top1_row = result.layers.index(summary.first_layer_top1)
        ax.axvline(
            top1_row,
            color="tab:red",
            linestyle=":",
            label=f"first top-1: layer {result.layer_labels[top1_row]}",
        )
    else:
        ax.plot([], [], " ", label="never top-1")
    above = "never" if summary.first_layer_above is None else f"layer {summary.first_layer_above}"
    ax.plot([], [], " ", label=f"first above {threshold}: {above}")
    return _finish_trajectory(
        fig,
        ax,
        result,
        log,
        _plain(target_text),
        f'{result.lens} lens on {result.model_name}: when does "{_plain(target_text)}" '
        f"emerge?\n{_quoted(summary.prompt)}",
    )


def plot_comparison(
    result: LensResult,
    prompts: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    position: int = -1,
    target: int = 0,
    title: str | None = None,
    log: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """Several prompts' target probabilities on one axis.

    Each prompt has its own target (the pun comparison) or all share one (pun vs
    literal context: pass ``labels=["Pun context", "Literal context"]``).
    """
    chosen = list(range(len(result.prompts))) if prompts is None else list(prompts)
    if labels is not None and len(labels) != len(chosen):
        raise InputError(f"Give one label per prompt: {len(chosen)} prompts, {len(labels)} labels.")
    fig, ax = _axes(ax, (11, 5))
    x = np.arange(len(result.layers))
    targets = {result.target_tokens[p][target] for p in chosen}
    for i, p in enumerate(chosen):
        probs = result.trajectory("target_prob", p, position, target)
        target_text = token_label(result.target_tokens[p][target])
        short = textwrap.shorten(result.prompts[p], 40, placeholder="...")
        label = labels[i] if labels is not None else f'"{target_text.strip()}" ({short})'
        ax.plot(x, probs, "-o", markersize=2, label=_plain(label))
    _layer_axis(ax, result)
    _probability_axis(ax, log)
    if len(targets) == 1:
        shared = _plain(token_label(next(iter(targets))))
        ax.set_ylabel(f'P("{shared}")')
        default_title = f'Same target "{shared}", different contexts'
    else:
        ax.set_ylabel("Probability of each prompt's target")
        default_title = "Comparing target emergence across layers"
    ax.set_title(f"{title or default_title} ({result.lens} lens, {result.model_name})")
    ax.grid(True, alpha=0.3)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot_lenses(
    results: Sequence[LensResult] | Mapping[str, LensResult],
    prompt: int = 0,
    position: int = -1,
    target: int = 0,
    threshold: float = 0.1,
    log: bool = False,
    ax: Axes | None = None,
) -> Figure:
    """The same target trajectory under each lens (logit, raw, tuned ...), one line each.

    ``results`` are results of the same prompt and target, one per lens; a mapping's
    keys label the lines (default: each result's ``lens``).
    """
    named = dict(results) if isinstance(results, Mapping) else {r.lens: r for r in results}
    if not named:
        raise InputError("plot_lenses needs at least one result (one per lens).")
    first = next(iter(named.values()))
    prompt_text = first.prompts[prompt]
    target_text = first.target_tokens[prompt][target] if first.target_tokens else ""
    for name, other in named.items():
        if (
            other.prompts[prompt] != prompt_text
            or other.target_tokens[prompt][target] != target_text
        ):
            raise InputError(
                f"The {name!r} result is for another prompt or target: compare lenses on "
                "results of the same prompt and target."
            )
    fig, ax = _axes(ax, (10, 4.5))
    for name, other in named.items():
        x = np.arange(len(other.layers))
        ax.plot(
            x,
            other.trajectory("target_prob", prompt, position, target),
            "-o",
            markersize=3,
            label=f"{name} lens",
        )
    ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold}")
    shown = _plain(token_label(target_text))
    return _finish_trajectory(
        fig,
        ax,
        first,
        log,
        shown,
        f'Lens comparison ({", ".join(named)}): P("{shown}") on {first.model_name}\n'
        f"{_quoted(prompt_text)}",
    )


# ----- layer x position pictures --------------------------------------------------------


def _columns(result: LensResult, prompt: int) -> tuple[np.ndarray, list[str]]:
    """Analysed columns of ``prompt`` and the input token at each."""
    result._check_prompt(prompt)
    columns = np.flatnonzero(result.positions[prompt] >= 0)
    if len(columns) > MAX_PICTURE_POSITIONS:
        raise InputError(
            f"A picture of {len(columns):,} positions is too wide to draw (at most "
            f"{MAX_PICTURE_POSITIONS}: it would take minutes and gigabytes); analyse fewer "
            "positions, e.g. positions=list(range(-64, 0)) (CLI: --window 64)."
        )
    tokens = [token_label(result.tokens[prompt][result.positions[prompt, c]]) for c in columns]
    return columns, tokens


def plot_heatmap(
    result: LensResult, prompt: int = 0, target: int = 0, ax: Axes | None = None
) -> Figure:
    """Probability of a target at every layer (rows) and position (columns).

    Compute it with ``positions="all"`` (CLI: ``logitlens heatmap``).
    """
    probs = result.require("target_prob")
    columns, tokens = _columns(result, prompt)
    data = probs[prompt][:, columns, target]
    fig, ax = _axes(ax, (max(8.0, 0.6 * len(columns) + 3), max(5.0, 0.22 * len(result.layers) + 2)))
    image = ax.imshow(data, aspect="auto", cmap="Blues", vmin=0, origin="lower")
    target_text = _plain(token_label(result.target_tokens[prompt][target]))
    fig.colorbar(image, ax=ax, label=f'P("{target_text}")')
    ax.set_xticks(range(len(tokens)), [_plain(t) for t in tokens], rotation=45, ha="right")
    ax.set_yticks(range(len(result.layers)), result.layer_labels, fontsize=7)
    ax.set_xlabel("Input token (prediction of the next token)")
    ax.set_ylabel("Layer")
    ax.set_title(
        f'{result.lens} lens heatmap: P("{target_text}") on {result.model_name}\n'
        f"{_quoted(result.prompts[prompt])}"
    )
    fig.tight_layout()
    return fig


def plot_grid(
    result: LensResult,
    prompt: int = 0,
    metric: str = "prob",
    width: int = 8,
    ax: Axes | None = None,
) -> Figure:
    """The classic logit-lens grid (nostalgebraist 2020).

    Rows are layers, columns are positions; each cell shows the lens's top-1 token and
    is coloured by ``metric``: ``prob`` (of that token), ``final_rank``, ``entropy``,
    ``kl``, ... (see :data:`GRID_METRICS`). When the result knows the model's own next token
    (metrics ``kl`` or ``final_rank``), it is written above each column and the cells
    that already predict it are bold.
    """
    spec = grid_metric(metric)
    top_ids = result.require("top_ids")
    values = result.require(spec.array)[prompt].astype(float)
    if values.ndim == 3:  # top-k or per target: the top-1 token, the first target
        values = values[..., 0]
    columns, tokens = _columns(result, prompt)
    values = values[:, columns]
    cells = top_ids[prompt][:, columns, 0]
    model_top = None if result.model_top_ids is None else result.model_top_ids[prompt, columns]

    n_layers = len(result.layers)
    fig, ax = _axes(ax, (max(8.0, 0.75 * len(columns) + 3), max(5.0, 0.3 * n_layers + 2)))
    if spec.log:
        norm: mcolors.Normalize = mcolors.LogNorm(vmin=1, vmax=max(2.0, np.nanmax(values)))
    elif spec.scale == "unit":
        norm = mcolors.Normalize(vmin=0, vmax=1)
    elif spec.scale == "diverging":
        extent = max(1e-9, float(np.nanmax(np.abs(values))))
        norm = mcolors.Normalize(vmin=-extent, vmax=extent)
    else:
        norm = mcolors.Normalize(vmin=0, vmax=max(1e-9, float(np.nanmax(values))))
    cmap = plt.get_cmap(spec.cmap)
    image = ax.imshow(values, aspect="auto", cmap=cmap, norm=norm, origin="lower")
    fig.colorbar(image, ax=ax, label=spec.label)
    for row in range(n_layers):
        for col in range(len(columns)):
            red, green, blue, _ = cmap(norm(values[row, col]))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            hit = model_top is not None and cells[row, col] == model_top[col]
            ax.text(
                col,
                row,
                token_label(result.token_text(cells[row, col]), width),
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if dark else "black",
                fontweight="bold" if hit else "normal",
                parse_math=False,
            )
    ax.set_xticks(range(len(tokens)), [_plain(t) for t in tokens], rotation=45, ha="right")
    ax.set_yticks(range(n_layers), result.layer_labels, fontsize=7)
    ax.set_xlabel("Input token")
    ax.set_ylabel("Layer")
    if model_top is not None:
        top_axis = ax.secondary_xaxis("top")
        top_axis.set_xticks(
            range(len(columns)),
            [_plain(token_label(result.token_text(i), width)) for i in model_top],
            rotation=45,
            ha="left",
        )
        top_axis.set_xlabel("Model's next token (bold cells: already top-1)")
    ax.set_title(
        f"{result.lens} lens grid on {result.model_name}, coloured by {spec.label}\n"
        f"{_quoted(result.prompts[prompt])}"
    )
    fig.tight_layout()
    return fig


def plot_generation(result: GenerationResult, metric: str = "prob", width: int = 8) -> Figure:
    """The grid over generated text: one column per generated token, one row per layer.

    Each cell is the layer's top-1 token at that step (bold where it is already the
    token the model generated, written above the column); the bottom axis shows the
    token the model read at each step.
    """
    fig = plot_grid(result.lens_result, metric=metric, width=width)
    ax = fig.axes[0]
    ax.set_xlabel("Token read at each step (the prompt's last, then each generated one)")
    ax.set_title(
        f"{result.lens_result.lens} lens over generated text on {result.lens_result.model_name}"
        f"\n{_quoted(result.prompt, 60)} -> {_quoted(result.text, 60)}"
    )
    fig.tight_layout()
    return fig


__all__ = [
    "FIGURE_SUFFIXES",
    "GRID_METRICS",
    "check_output_path",
    "grid_metric",
    "plot_comparison",
    "plot_generation",
    "plot_grid",
    "plot_heatmap",
    "plot_lenses",
    "plot_trajectory",
    "save_figure",
    "token_label",
]


# ----- lens evaluation ------------------------------------------------------------------


def plot_evaluation(evaluation: LensEvaluation) -> Figure:
    """KL to the final layer and perplexity per layer, one line per lens."""
    figure, (kl_axis, ppl_axis) = plt.subplots(1, 2, figsize=(11, 4))
    labels = evaluation.layer_labels()
    positions = range(len(labels))
    for lens in evaluation.lenses:
        kl_axis.plot(positions, evaluation.kl[lens], marker=".", label=lens)
        ppl_axis.plot(positions, evaluation.perplexity(lens), marker=".", label=lens)
    for axis, title in ((kl_axis, "KL(final || lens), nats"), (ppl_axis, "perplexity")):
        axis.set_title(title)
        axis.set_xlabel("layer")
        axis.set_xticks(list(positions)[:: max(1, len(labels) // 10)])
        axis.set_xticklabels(labels[:: max(1, len(labels) // 10)])
        axis.set_yscale("log")
        axis.legend()
    figure.suptitle(f"{evaluation.model_name}: lenses on {evaluation.tokens} held-out tokens")
    figure.tight_layout()
    return figure


def plot_scoreboard(board: Scoreboard) -> Figure:
    """The lens scoreboard, one line per lens over layers: KL to the model's output,
    top-1 agreement with it, perplexity of the text, and pass@k on items (largest k)."""
    evaluation, scored = board.evaluation, board.pass_at_k
    panels = [
        ("KL(model || lens), nats", lambda lens: evaluation.kl[lens], "log"),
        ("top-1 agreement with the model", lambda lens: evaluation.top1_agreement[lens], "linear"),
        ("perplexity of the next token", evaluation.perplexity, "log"),
    ]
    if scored is not None:
        k = max(scored.ks)
        title = f"pass@{k} on {scored.categories['all']} items"
        panels.append((title, lambda lens: scored.values[lens]["all"][k], "linear"))
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8))
    labels = evaluation.layer_labels()
    positions = range(len(labels))
    step = max(1, len(labels) // 8)
    for axis, (title, values, scale) in zip(np.atleast_1d(axes), panels, strict=True):
        for lens in evaluation.lenses:
            axis.plot(positions, values(lens), marker=".", label=lens)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("layer")
        axis.set_xticks(list(positions)[::step])
        axis.set_xticklabels(labels[::step])
        axis.set_yscale(scale)
    np.atleast_1d(axes)[0].legend()
    figure.suptitle(
        f"{evaluation.model_name}: lens scoreboard ({evaluation.tokens} held-out tokens)"
    )
    figure.tight_layout()
    return figure


# ----- studies ------------------------------------------------------------------------

_TRAJECTORY_LABELS = {
    "target_prob": "mean P(target)",
    "logit_diff": "mean logit difference target - alternative",
    "entropy": "mean entropy (nats)",
}


def _study_groups(summary: StudySummary, groups: Sequence[str] | None) -> list[str]:
    known = [g.group for g in summary.groups]
    chosen = list(groups) if groups is not None else known
    unknown = [g for g in chosen if g not in known]
    if unknown:
        raise InputError(f"No group(s) {unknown} in this study; it has {known}.")
    return chosen


def plot_study_trajectories(
    summary: StudySummary,
    metrics: Sequence[str] = ("target_prob", "logit_diff"),
    groups: Sequence[str] | None = None,
) -> Figure:
    """Mean trajectory per group on normalised depth, with its 95% bootstrap band."""
    chosen = _study_groups(summary, groups)
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for index, group in enumerate(chosen):
            found = [t for t in summary.trajectories if t.group == group and t.metric == metric]
            if not found:
                continue
            line = found[0]
            color = f"C{index}"
            ax.plot(line.depth, line.mean, "-o", markersize=2.5, color=color, label=group)
            ax.fill_between(line.depth, line.low, line.high, color=color, alpha=0.2)
        ax.set_xlabel("normalised depth (layer / n_layers)")
        ax.set_ylabel(_TRAJECTORY_LABELS.get(metric, metric))
        ax.set_xlim(0, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(
        f"{summary.lens} lens on {summary.model_name} ({summary.n_items} items, "
        f"{summary.n_layers} layers): mean per group, 95% bootstrap band"
    )
    fig.tight_layout()
    return fig


def plot_decision_depths(summary: StudySummary, groups: Sequence[str] | None = None) -> Figure:
    """Distribution of decision depths per group; items never top-1 in a "never" column."""
    chosen = _study_groups(summary, groups)
    n_layers = summary.n_layers
    never = 1 + max(3 / n_layers, 0.08)  # a column apart from the last layer's
    half = 0.5 / n_layers
    edges = [*(np.arange(n_layers + 1) / n_layers + half), never - half, never + half]
    fig, axes = plt.subplots(
        len(chosen), 1, figsize=(9, 1.4 + 1.3 * len(chosen)), sharex=True, squeeze=False
    )
    for index, (ax, group) in enumerate(zip(axes[:, 0], chosen, strict=True)):
        depths = summary.decision_depths[group]
        shown = np.where(np.isfinite(depths), depths, never)
        weights = np.full(len(shown), 1 / max(len(shown), 1))
        ax.hist(shown, bins=edges, weights=weights, color=f"C{index}", alpha=0.8)
        median = next(g for g in summary.groups if g.group == group).depth_top1
        if not np.isnan(median.estimate):
            ax.axvline(median.estimate, color="black", linewidth=1)
            ax.axvspan(median.low, median.high, color="black", alpha=0.1)
        ax.set_ylabel("share")
        ax.set_title(f"{group} (n={len(depths)})", fontsize=9, loc="left")
        ax.grid(True, alpha=0.3)
    ticks = [0.25, 0.5, 0.75, 1.0, never]
    axes[-1, 0].set_xticks(ticks, ["0.25", "0.5", "0.75", "1", "never"])
    axes[-1, 0].set_xlabel("decision depth: first layer where the target is top-1, / n_layers")
    fig.suptitle(
        f"{summary.model_name}: decision depth per group (line: median of items reaching "
        "top-1, band: 95% CI)"
    )
    fig.tight_layout()
    return fig


def plot_study_comparison(
    comparison: StudyComparison, metric: str = "target_prob", groups: Sequence[str] | None = None
) -> Figure:
    """Several models on one normalised-depth axis: one panel per group, a line per model."""
    first = comparison.summaries[0]
    chosen = _study_groups(first, groups)
    chosen = [g for g in chosen if "(" not in g] if groups is None else chosen
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.2 * len(chosen), 4), squeeze=False)
    for ax, group in zip(axes[0], chosen, strict=True):
        for index, summary in enumerate(comparison.summaries):
            found = [t for t in summary.trajectories if t.group == group and t.metric == metric]
            if not found:
                continue
            line = found[0]
            label = f"{summary.model_name} ({summary.n_layers} layers)"
            ax.plot(line.depth, line.mean, "-", color=f"C{index}", label=label)
            ax.fill_between(line.depth, line.low, line.high, color=f"C{index}", alpha=0.2)
        ax.set_title(group)
        ax.set_xlabel("normalised depth")
        ax.set_xlim(0, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel(_TRAJECTORY_LABELS.get(metric, metric))
    axes[0, 0].legend(fontsize=8, loc="upper left")
    fig.suptitle("Models compared on normalised depth (mean, 95% bootstrap band)")
    fig.tight_layout()
    return fig
