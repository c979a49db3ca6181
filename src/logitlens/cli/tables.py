"""Rich tables and summaries drawn from results (no computation here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from rich.table import Table

if TYPE_CHECKING:
    from ..attribution import Attribution
    from ..generation import GenerationResult
    from ..loading import ModelInfo
    from ..results import LensResult, TargetSummary


def format_prob(prob: float) -> str:
    """Four decimals, or scientific notation for the tiny values early layers give."""
    return f"{prob:.4f}" if prob >= 1e-3 else f"{prob:.1e}"


def info_table(info: ModelInfo) -> Table:
    table = Table(title="Model", show_header=False)
    for key, value in vars(info).items():
        table.add_row(key.replace("_", " "), str(value))
    return table


def topk_table(result: LensResult, prompt: int = 0, position: int = -1, show: int = 5) -> Table:
    """Layers as rows, the top ``show`` tokens with probabilities as columns."""
    column = result.column(prompt, position)
    token_index = int(result.positions[prompt, column])
    title = (
        f"Top-{min(show, result.k)} per layer ({result.lens} lens) after "
        f"{result.tokens[prompt][token_index]!r} (position {token_index})"
    )
    table = Table(title=title)
    table.add_column("layer", justify="right")
    for rank in range(min(show, result.k)):
        table.add_column(f"#{rank + 1}")
    for label, rows in result.topk_table(prompt, position).items():
        table.add_row(label, *[f"{row.token!r} {row.prob:.3f}" for row in rows[:show]])
    return table


def track_table(result: LensResult, prompt: int = 0, position: int = -1, target: int = 0) -> Table:
    """Per-layer probability, logit and rank of one target, with a text bar."""
    token = result.target_tokens[prompt][target]
    index = int(result.positions[prompt, result.column(prompt, position)])
    after = result.tokens[prompt][index]
    table = Table(
        title=f"P({token!r}) per layer after {after!r} (position {index}, {result.lens} lens)"
    )
    diffs = None
    if result.logit_diff is not None:
        diffs = result.trajectory("logit_diff", prompt, position, target)
    versus = [] if diffs is None else [f"vs {result.alternative_tokens[prompt][target]!r}"]
    names = ("layer", "prob", "logit", "rank", *versus)
    for name in (*names, ""):
        table.add_column(name, justify="left" if name == "" else "right")
    probs = result.trajectory("target_prob", prompt, position, target)
    logits = result.trajectory("target_logit", prompt, position, target)
    ranks = result.trajectory("target_rank", prompt, position, target)
    for row, (label, prob, logit, rank) in enumerate(
        zip(result.layer_labels, probs, logits, ranks, strict=True)
    ):
        diff = [] if diffs is None else [f"{diffs[row]:+.2f}"]
        bar = "█" * round(40 * float(prob))
        table.add_row(label, format_prob(prob), f"{logit:.2f}", str(int(rank)), *diff, bar)
    return table


def summary_sentences(summary: TargetSummary) -> list[str]:
    """Say plainly when (or that never) the target crosses the threshold / is top-1."""
    token, threshold = summary.target, summary.threshold
    above, top1 = summary.first_layer_above, summary.first_layer_top1
    return [
        f"{token!r} first exceeds {threshold} at layer {above}."
        if above is not None
        else f"{token!r} never exceeds {threshold} at any layer "
        f"(highest: {format_prob(summary.max_prob)} at layer {summary.max_prob_layer}).",
        f"{token!r} first becomes the top-1 token at layer {top1}."
        if top1 is not None
        else f"{token!r} never becomes the top-1 token at any layer.",
    ]


def compare_table(summaries: list[TargetSummary]) -> Table:
    table = Table(title="Target probability across layers, per prompt")
    for name in ("prompt", "target", "first > thr", "first top-1", "max (layer)", "final"):
        table.add_column(name)
    for s in summaries:
        table.add_row(
            s.prompt if len(s.prompt) <= 50 else s.prompt[:47] + "...",
            repr(s.target),
            "never" if s.first_layer_above is None else str(s.first_layer_above),
            "never" if s.first_layer_top1 is None else str(s.first_layer_top1),
            f"{format_prob(s.max_prob)} ({s.max_prob_layer})",
            format_prob(s.final_prob),
        )
    return table


def generation_table(result: GenerationResult) -> Table:
    """One row per generated token: where it first became top-1 and where it stayed."""
    table = Table(
        title=f"Generated tokens, {result.lens_result.lens} lens over "
        f"{result.n_layers} layers: first top-1, and top-1 from there on"
    )
    for column in ("step", "token", "first top-1", "top-1 from", "depth"):
        table.add_column(column, justify="left" if column == "token" else "right")
    depths = result.normalised_depth("first")
    for step, (token, first, stable, depth) in enumerate(
        zip(result.generated_tokens, result.first_top1, result.stable_top1, depths, strict=True)
    ):
        table.add_row(
            str(step),
            repr(token),
            "-" if first is None else result.lens_result.layer_labels[result.layers.index(first)],
            "-" if stable is None else result.lens_result.layer_labels[result.layers.index(stable)],
            "-" if depth is None else f"{depth:.2f}",
        )
    return table


def attribution_table(result: Attribution, prompt: int = 0, position: int = -1) -> Table:
    """Layers as rows: what attention and MLP add to the target's logit (and the difference).

    The embedding and the constant (norm and unembedding biases) fill only the total
    column; the totals sum to the model's own logit, shown last.
    """
    from ..attribution import COMPONENTS

    column = result.column(prompt, position)
    index = int(result.positions[prompt, column])
    token = result.target_tokens[prompt][0]
    measures = [("", result.target)]
    if result.difference is not None:
        measures.append((f" vs {result.alternative_tokens[prompt][0]!r}", result.difference))
    table = Table(
        title=f"Direct logit attribution of {token!r} after {result.tokens[prompt][index]!r} "
        f"(position {index})"
    )
    table.add_column("part", justify="right")
    for label, _ in measures:
        for name in (*COMPONENTS, "total"):
            table.add_column(name + label, justify="right")

    def cells(values: list[float | None]) -> list[str]:
        return ["" if v is None else f"{v:+.3f}" for v in values]

    def whole(name: str, pick) -> None:
        table.add_row(name, *cells([v for _, parts in measures for v in (None, None, pick(parts))]))

    whole("embed", lambda parts: parts.embed[prompt, column, 0])
    for layer in range(result.n_layers):
        values: list[float | None] = []
        for _, parts in measures:
            pair = parts.components[prompt, layer, :, column, 0]
            values += [*pair, pair.sum()]
        table.add_row(str(layer), *cells(values))
    whole("constant", lambda parts: parts.constant[prompt, column, 0])
    whole("sum = logit", lambda parts: parts.total()[prompt, column, 0])
    return table


def heads_table(result: Attribution, prompt: int = 0, position: int = -1, show: int = 10) -> Table:
    """The ``show`` heads with the largest direct contribution, largest |value| first."""
    column = result.column(prompt, position)
    parts = result.difference if result.difference is not None else result.target
    values = parts.heads[prompt, :, :, column, 0]  # [layer, head]
    order = np.argsort(-np.abs(values), axis=None)[:show]
    measure = "target" if result.difference is None else "target - alternative"
    table = Table(title=f"Top {len(order)} heads ({measure})")
    for name in ("layer", "head", "contribution"):
        table.add_column(name, justify="right")
    for flat in order:
        layer, head = np.unravel_index(flat, values.shape)
        table.add_row(str(layer), str(head), f"{values[layer, head]:+.3f}")
    return table
