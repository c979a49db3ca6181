"""``heatmap``, ``grid`` and ``report``: pictures and the interactive HTML report.

Long prompts are drawn over a window of their last positions (``--window``), said on
stderr, so a picture's size and memory stay bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import InputError
from ..metrics import PICTURES, picture
from ..paths import REPORT_SUFFIXES
from ..targets import parse_target
from .application import say
from .flags import (
    AlternativeOption,
    PromptArgument,
    Request,
    TargetOption,
    analysis_command,
    parse_tokens,
)
from .runners import check_picture_path, run_analysis, save_plot

PICTURE_OPTIONS = ("model", "remote", "timeout", "device", "lens", "tuned_path", "layers", "force")


def _out_option(example: str) -> object:
    return typer.Option("--out", "-o", help=f"File to write, e.g. {example}.")


@analysis_command(*PICTURE_OPTIONS, "window")
def heatmap(
    request: Request,
    prompt: PromptArgument,
    target: TargetOption,
    out: Annotated[Path, _out_option("heatmap.png (.png, .svg or .pdf)")],
):
    """Heatmap of a target's probability at every layer and position.

    Example: logitlens heatmap 'The capital of France is' -t ' Paris' -o heatmap.png
    """
    from ..pictures import plots

    check_picture_path(out, force=request.force)
    request.positions = "all"
    result = run_analysis(request, prompt, targets=parse_target(target), picture=True)
    save_plot(lambda: plots.plot_heatmap(result), out, force=request.force)


@analysis_command(*PICTURE_OPTIONS, "positions", "window", positions="all")
def grid(
    request: Request,
    prompt: PromptArgument,
    out: Annotated[Path, _out_option("grid.png (.png, .svg or .pdf)")],
    metric: Annotated[
        str,
        typer.Option(
            "--metric",
            help="Cell colour: " + ", ".join(PICTURES) + " (logit_diff needs --target and "
            "--alternative).",
        ),
    ] = "prob",
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Token for --metric logit_diff.")
    ] = None,
    alternative: AlternativeOption = None,
):
    """The classic logit-lens grid: top-1 token per layer and position, coloured.

    Example: logitlens grid 'The Eiffel Tower is in the city of' -o grid.png --metric kl
    """
    check_picture_path(out, force=request.force)
    spec = picture(metric)
    request.k = 1
    result = run_analysis(
        request,
        prompt,
        targets=None if target is None else parse_target(target),
        alternatives=None if alternative is None else parse_target(alternative),
        metrics=list(dict.fromkeys(["topk", "final_rank", spec.metric])),
        picture=True,
    )
    from ..pictures import plots

    save_plot(lambda: plots.plot_grid(result, metric=metric), out, force=request.force)


@analysis_command(*PICTURE_OPTIONS, "positions", "window", "k", positions="all")
def report(
    request: Request,
    prompts: Annotated[list[str], typer.Argument(help="One or more prompts.")],
    out: Annotated[Path, _out_option("report.html")],
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="Token to follow; one for all or one per prompt."),
    ] = None,
    title: Annotated[str, typer.Option("--title", help="Page title.")] = "logitlens report",
    alternative: AlternativeOption = None,
    attribution: Annotated[
        bool,
        typer.Option(
            "--attribution",
            help="Add the direct logit attribution: each layer's attention and MLP part of "
            "the target's logit (and of target minus --alternative), as bars.",
        ),
    ] = False,
):
    """One self-contained interactive HTML page: grid, top-k on hover, trajectories.

    Example: logitlens report 'The capital of France is' -t ' Paris' -o report.html
    """
    from ..pictures.report import write_report

    check_picture_path(out, REPORT_SUFFIXES, request.force)
    if attribution and not target:
        raise InputError(
            "--attribution needs --target: the bars are shares of a target's logit, "
            "e.g. --target ' current'."
        )
    result = run_analysis(
        request,
        prompts,
        targets=parse_tokens(target),
        alternatives=None if alternative is None else parse_target(alternative),
        metrics=["topk", "entropy", "kl", "final_rank", *(["logit_diff"] if alternative else [])],
        picture=True,
        attribution=attribution,
    )
    say(f"Report written to {write_report(result, out, title, force=request.force)}")
