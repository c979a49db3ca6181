"""``study``: a lens over a whole dataset (resumable), its summary, report and comparison.

``logitlens study [DATA] --out DIR`` runs (``run`` is the default subcommand, so DATA may
come right after ``study``); ``study summary DIR``, ``study compare DIR1 DIR2 ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from ..options import LIMITS
from ..paths import REPORT_SUFFIXES
from .application import app, console, err_console, keep, note, print_json
from .flags import ForceOption, JsonOption, Request, analysis_command, limited
from .runners import check_picture_path, open_lens, open_model


class _RunByDefault(TyperGroup):
    """``study DATA ...`` means ``study run DATA ...``: subcommands are matched by name first."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


study_app = typer.Typer(
    cls=_RunByDefault,
    help="Run a lens over a dataset (default: the bundled puns, literals and facts), "
    "summarise it with intervals and tests, and compare models on normalised depth.",
)
app.add_typer(study_app, name="study")

SeedOption = Annotated[
    int,
    typer.Option(
        "--seed", callback=limited("seed"), help="Seed of the bootstrap (reproducible; 0 or more)."
    ),
]
BootOption = Annotated[
    int,
    typer.Option(
        "--n-boot",
        callback=limited("n_boot"),
        help=f"Bootstrap resamples (1..{LIMITS['n_boot'].maximum:,}).",
    ),
]


@analysis_command(
    "model",
    "remote",
    "timeout",
    "device",
    "lens",
    "tuned_path",
    "json_output",
    name="run",
    parent=study_app,
)
def run(
    request: Request,
    data: Annotated[
        Path | None,
        typer.Argument(help="Items file (JSONL, CSV or Parquet); default: the bundled dataset."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Study directory (created; a rerun resumes).")
    ] = Path("study"),
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Items per forward pass.")
    ] = 16,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Probability for first_layer_above.")
    ] = 0.1,
    generate: Annotated[
        int,
        typer.Option(
            "--generate",
            min=0,
            help="Also continue each prompt greedily by N tokens: does the model say the "
            "target, and at what depth is its first token decided? (0: no).",
        ),
    ] = 0,
    attribution: Annotated[
        bool,
        typer.Option(
            "--attribution",
            help="Also record, per item and layer, what attention and MLP write directly "
            "to the target's logit (and target - alternative), in the same forward pass.",
        ),
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
):
    """Run the lens over every item; results stream to DIR as Parquet, resumably."""
    from ..studies import load_items, run_study, summarize_study
    from ..studies.run import kept_in

    items = load_items(data)
    keep(lambda: kept_in(out))
    lens = open_lens(request)
    lens_model = open_model(request.model, request.remote, request.device, request.timeout)
    if lens is None:  # the model's file in the user cache
        lens = open_lens(request, lens_model)
    study = run_study(
        lens_model,
        items,
        out_dir=out,
        lens=lens,
        batch_size=batch_size,
        threshold=threshold,
        generate=generate,
        attribution=attribution,
        progress=not (no_progress or request.json_output),
    )
    summary = summarize_study(study)
    if request.json_output:
        print_json(summary.to_dict())
        return
    err_console.print(f"{len(study.items)} items in {study.out_dir}")
    _print_summary(summary)


@study_app.command("summary")
def summary(
    directory: Annotated[Path, typer.Argument(help="A study directory.")],
    seed: SeedOption = 0,
    n_boot: BootOption = 2000,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Save the trajectories per group (.png, .svg, .pdf)."),
    ] = None,
    depth_plot: Annotated[
        Path | None,
        typer.Option("--depth-plot", help="Save the decision-depth distribution."),
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the HTML study report (.html).")
    ] = None,
    json_output: JsonOption = False,
    force: ForceOption = False,
):
    """Per group: share reaching top-1, median decision depth [95% CI]; rank tests."""
    from ..pictures import plots
    from ..pictures.study_report import write_study_report
    from ..studies import summarize_study

    for picture in (plot, depth_plot):
        check_picture_path(picture, force=force)
    check_picture_path(report, REPORT_SUFFIXES, force)
    result = summarize_study(_load(directory), seed=seed, n_boot=n_boot)
    if plot:
        plots.save_figure(plots.plot_study_trajectories(result), plot, force=force)
    if depth_plot:
        plots.save_figure(plots.plot_decision_depths(result), depth_plot, force=force)
    if report:
        write_study_report(result, report, force=force)
    if json_output:
        print_json(result.to_dict())
        return
    _print_summary(result)
    for path in (plot, depth_plot, report):
        if path:
            err_console.print(f"Saved {path}")


@study_app.command("compare")
def compare(
    directories: Annotated[list[Path], typer.Argument(help="Study directories (one per model).")],
    seed: SeedOption = 0,
    n_boot: BootOption = 2000,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Save the models' trajectories on normalised depth."),
    ] = None,
    json_output: JsonOption = False,
    force: ForceOption = False,
):
    """Several models' studies on one normalised-depth axis (table, --plot)."""
    from ..pictures import plots
    from ..studies import compare_studies

    check_picture_path(plot, force=force)
    comparison = compare_studies([_load(d) for d in directories], seed=seed, n_boot=n_boot)
    if plot:
        plots.save_figure(plots.plot_study_comparison(comparison), plot, force=force)
    if json_output:
        print_json(comparison.to_dict())
        return
    table = Table(title="Decision depth (layer / n_layers) per model and group")
    for name in ("model", "layers", "group", "n", "reach top-1", "median depth [95% CI]"):
        table.add_column(name)
    for summary in comparison.summaries:
        for group in summary.groups:
            table.add_row(
                summary.model_name,
                str(summary.n_layers),
                group.group,
                str(group.n),
                group.share_top1.text(),
                group.depth_top1.text(),
            )
    console.print(table)
    if plot:
        err_console.print(f"Saved {plot}")


def _load(directory: Path):
    """A study directory, with a note on stderr when it is not complete."""
    from ..studies import StudyResult

    study = StudyResult.load(directory)
    if not study.complete:
        total = int(study.manifest["dataset"]["n_items"])
        note(
            f"Note: {directory} is a partial study: {len(study.items)} of {total} items. "
            f"Finish it with `logitlens study DATA --out {directory}` (the same setup)."
        )
    return study


def _print_summary(summary) -> None:
    table = Table(
        title=f"{summary.model_name}, {summary.lens} lens, {summary.n_items} items, "
        f"{summary.n_layers} layers (depth = layer / n_layers; 95% bootstrap CI, "
        f"seed {summary.seed})"
    )
    said = summary.groups[0].says_target is not None
    columns = [
        "group",
        "n",
        "reach top-1",
        "median depth top-1",
        f"reach p>{summary.threshold:g}",
        f"median depth p>{summary.threshold:g}",
        "final p",
    ]
    if said:
        columns += ["says target", "depth of said token", "said token stable from"]
    for name in columns:
        table.add_column(name)
    for group in summary.groups:
        cells = [
            group.group,
            str(group.n),
            group.share_top1.text(),
            group.depth_top1.text(),
            group.share_above.text(),
            group.depth_above.text(),
            f"{group.final_prob:.3f}",
        ]
        if said:
            cells += [
                group.says_target.text(),
                group.said_depth_top1.text(),
                group.said_depth_stable.text(),
            ]
        table.add_row(*cells)
    console.print(table)
    tests = Table(title="Decision depth compared (Mann-Whitney U; never top-1 = after the end)")
    for name in ("groups", "n", "U", "p", "Cliff's delta"):
        tests.add_column(name)
    for test in summary.tests:
        tests.add_row(
            f"{test.first} vs {test.second}",
            f"{test.n_first} / {test.n_second}",
            f"{test.u:.1f}",
            f"{test.p_value:.3g}",
            f"{test.cliffs_delta:+.2f}",
        )
    console.print(tests)
    if summary.paired:
        paired = Table(
            title="Puns against their literal controls, pair by pair (Wilcoxon signed-rank; "
            "never top-1 = one layer after the end)"
        )
        for name in (
            "metric",
            "pairs",
            "pun higher / literal higher / tied",
            "mean pun - literal [95% CI]",
            "W",
            "p",
            "rank-biserial",
        ):
            paired.add_column(name)
        for test in summary.paired:
            paired.add_row(
                test.metric,
                str(test.n_pairs),
                f"{test.n_first_higher} / {test.n_second_higher} / {test.n_tied}",
                test.mean_difference.text(3),
                f"{test.w:.1f}",
                f"{test.p_value:.3g}",
                f"{test.rank_biserial:+.2f}",
            )
        console.print(paired)
    if summary.components:
        _print_components(summary)
    if summary.kruskal is not None:
        k = summary.kruskal
        console.print(
            f"Kruskal-Wallis over {', '.join(k.groups)}: H = {k.h:.2f}, df = {k.df}, "
            f"p = {k.p_value:.3g}"
        )


def _print_components(summary) -> None:
    """Which part writes the target: attention and MLP totals, and MLP against attention."""
    table = Table(
        title="Direct logit attribution at the last position, summed over layers "
        "(mean [95% CI]; peak: median depth of the layer adding most)"
    )
    for name in ("group", "measure", "part", "n", "total", "peak depth"):
        table.add_column(name)
    for item in summary.components:
        table.add_row(
            item.group,
            item.measure,
            item.part,
            str(item.n),
            item.total.text(2),
            item.peak_depth.text(),
        )
    console.print(table)
    tests = Table(title="MLP against attention, item by item (Wilcoxon signed-rank)")
    for name in ("comparison", "n", "MLP higher / attention higher", "mean MLP - attention", "p"):
        tests.add_column(name)
    for test in summary.component_tests:
        tests.add_row(
            test.metric,
            str(test.n_pairs),
            f"{test.n_first_higher} / {test.n_second_higher}",
            test.mean_difference.text(2),
            f"{test.p_value:.3g}",
        )
    console.print(tests)
