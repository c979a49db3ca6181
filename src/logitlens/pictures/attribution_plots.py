"""Pictures of a direct logit attribution: attention vs MLP per layer, heads per layer.

Each function takes an :class:`~logitlens.attribution.Attribution` (computed beforehand
by :func:`logitlens.analysis.attribute`) and returns a matplotlib ``Figure``; save
it with :func:`logitlens.pictures.plots.save_figure`.

Example:
    >>> result = attribute(model, PUN, target=" current", alternative=" water", heads=True)
    >>> save_figure(plot_attribution(result, measure="difference"), "dla.png")
"""

from __future__ import annotations

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..attribution import COMPONENTS, Attribution
from .plots import _axes, _plain, token_label

COLOURS = {"attention": "#4C72B0", "mlp": "#DD8452", "embed": "#8C8C8C"}


def _title(result: Attribution, prompt: int, column: int, target: int, measure: str) -> str:
    position = int(result.positions[prompt, column])
    token = result.target_tokens[prompt][target]
    what = f"logit of {token!r}"
    if measure == "difference":
        what = f"logit({token!r}) - logit({result.alternative_tokens[prompt][target]!r})"
    after = token_label(result.tokens[prompt][position], 20)
    return _plain(f"{what} after {after!r} (position {position})")


def plot_components(
    result: Attribution,
    prompt: int = 0,
    position: int = -1,
    target: int = 0,
    measure: str = "target",
    ax: Axes | None = None,
) -> Figure:
    """Bars per layer: what its attention and its MLP add to the measure (embedding first)."""
    parts = result.measure(measure)
    column = result.column(prompt, position)
    fig, ax = _axes(ax, (max(6.0, 0.35 * result.n_layers + 2), 4))
    layers = np.arange(result.n_layers)
    width = 0.4
    for offset, (c, name) in zip((-width / 2, width / 2), enumerate(COMPONENTS), strict=True):
        values = parts.components[prompt, :, c, column, target]
        ax.bar(layers + offset, values, width, label=name, color=COLOURS[name])
    ax.bar(
        [-1], [parts.embed[prompt, column, target]], width, label="embed", color=COLOURS["embed"]
    )
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks([-1, *layers], ["emb", *map(str, layers)], fontsize=7)
    ax.set_xlabel("layer")
    ax.set_ylabel("direct contribution (logit)")
    total = parts.logit[prompt, column, target]
    ax.set_title(_title(result, prompt, column, target, measure) + f" = {total:.2f}", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def plot_heads(
    result: Attribution,
    prompt: int = 0,
    position: int = -1,
    target: int = 0,
    measure: str = "target",
    ax: Axes | None = None,
) -> Figure:
    """A layer x head heatmap of each head's direct contribution (diverging, centred at 0)."""
    parts = result.measure(measure)
    if parts.heads is None:
        from ..errors import InputError

        raise InputError("This attribution has no heads: run attribute(..., heads=True) (--heads).")
    column = result.column(prompt, position)
    values = parts.heads[prompt, :, :, column, target]  # [layer, head]
    fig, ax = _axes(ax, (max(4.0, 0.3 * result.n_heads + 2), 0.25 * result.n_layers + 2))
    limit = float(np.nanmax(np.abs(values))) or 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("heads: " + _title(result, prompt, column, target, measure), fontsize=9)
    fig.colorbar(image, ax=ax, label="direct contribution (logit)")
    return fig


def plot_attribution(
    result: Attribution,
    prompt: int = 0,
    position: int = -1,
    target: int = 0,
    measure: str = "target",
) -> Figure:
    """The bars of :func:`plot_components`, and beside them :func:`plot_heads` if computed."""
    if result.measure(measure).heads is None:
        return plot_components(result, prompt, position, target, measure)
    fig, (bars, heads) = plt.subplots(
        1, 2, figsize=(14, max(4.0, 0.25 * result.n_layers + 2)), width_ratios=(3, 2)
    )
    plot_components(result, prompt, position, target, measure, ax=bars)
    plot_heads(result, prompt, position, target, measure, ax=heads)
    fig.tight_layout()
    return fig
