"""``heatmap``, ``grid`` and ``report``: pictures and the interactive HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..analysis import analyze
from ..paths import REPORT_SUFFIXES, check_output_path
from ..pictures import plots
from ..pictures.report import write_report
from .common import (
    DeviceOption,
    KOption,
    LayersOption,
    LensOption,
    ModelOption,
    RemoteOption,
    TimeoutOption,
    TunedPathOption,
    app,
    console,
    open_model,
    parse_target,
)

PromptArgument = Annotated[str, typer.Argument(help="The prompt to analyse.")]
AllPositionsOption = Annotated[
    str, typer.Option("--positions", help="all (default), last, or indices like 0,-1.")
]


def _out_option(example: str) -> object:
    return typer.Option("--out", "-o", help=f"File to write, e.g. {example}.")


@app.command()
def heatmap(
    prompt: PromptArgument,
    target: Annotated[str, typer.Option("--target", "-t", help="Token to map, e.g. ' current'.")],
    out: Annotated[Path, _out_option("heatmap.png (.png, .svg or .pdf)")],
    model: ModelOption = None,
    remote: RemoteOption = False,
    timeout: TimeoutOption = None,
    device: DeviceOption = None,
    lens: LensOption = "logit",
    tuned_path: TunedPathOption = None,
    layers: LayersOption = None,
):
    """Heatmap of a target's probability at every layer and position."""
    check_output_path(out)
    result = analyze(
        open_model(model, remote, device, timeout),
        prompt,
        lens=lens,
        tuned_path=tuned_path,
        layers=layers,
        positions="all",
        targets=parse_target(target),
    )
    console.print(f"Heatmap written to {plots.save_figure(plots.plot_heatmap(result), out)}")


@app.command()
def grid(
    prompt: PromptArgument,
    out: Annotated[Path, _out_option("grid.png (.png, .svg or .pdf)")],
    metric: Annotated[
        str, typer.Option("--metric", help=f"Cell colour: {', '.join(plots.GRID_METRICS)}.")
    ] = "prob",
    model: ModelOption = None,
    remote: RemoteOption = False,
    timeout: TimeoutOption = None,
    device: DeviceOption = None,
    lens: LensOption = "logit",
    tuned_path: TunedPathOption = None,
    layers: LayersOption = None,
    positions: AllPositionsOption = "all",
):
    """The classic logit-lens grid: top-1 token per layer and position, coloured."""
    check_output_path(out)
    spec = plots.grid_metric(metric)
    result = analyze(
        open_model(model, remote, device, timeout),
        prompt,
        lens=lens,
        tuned_path=tuned_path,
        layers=layers,
        positions=positions,
        k=1,
        metrics=list(dict.fromkeys(["topk", "final_rank", spec.metric])),
    )
    figure = plots.plot_grid(result, metric=metric)
    console.print(f"Grid written to {plots.save_figure(figure, out)}")


@app.command()
def report(
    prompts: Annotated[list[str], typer.Argument(help="One or more prompts.")],
    out: Annotated[Path, _out_option("report.html")],
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", help="Token to follow; one for all or one per prompt."),
    ] = None,
    model: ModelOption = None,
    remote: RemoteOption = False,
    timeout: TimeoutOption = None,
    device: DeviceOption = None,
    lens: LensOption = "logit",
    tuned_path: TunedPathOption = None,
    layers: LayersOption = None,
    positions: AllPositionsOption = "all",
    k: KOption = 10,
    title: Annotated[str, typer.Option("--title", help="Page title.")] = "logitlens report",
):
    """One self-contained interactive HTML page: grid, top-k on hover, trajectories."""
    check_output_path(out, REPORT_SUFFIXES)
    targets = [parse_target(t) for t in target or []]
    result = analyze(
        open_model(model, remote, device, timeout),
        prompts,
        lens=lens,
        tuned_path=tuned_path,
        layers=layers,
        positions=positions,
        k=k,
        targets=None if not targets else targets[0] if len(targets) == 1 else targets,
        metrics=["topk", "entropy", "kl", "final_rank"],
    )
    console.print(f"Report written to {write_report(result, out, title)}")
