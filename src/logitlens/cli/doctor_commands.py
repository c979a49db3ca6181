"""``logitlens doctor``: check that logitlens reads a model the way the model reads itself."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .application import app, console, print_json
from .flags import DeviceOption, JsonOption, ModelOption
from .runners import open_model


@app.command()
def doctor(
    model: ModelOption = None,
    targets: Annotated[
        Path | None,
        typer.Option(
            "--targets",
            help="Also check that a file's targets are single tokens: study items "
            "(.jsonl, .csv, .parquet) or a compare JSONL.",
        ),
    ] = None,
    device: DeviceOption = None,
    json_output: JsonOption = False,
):
    """Check a model's adapter: run it after registering an architecture, before a long study.

    Compares the logit lens with the model's own forward pass: the last layer equals the
    model's logits (soft-cap included), a padded batch equals one-by-one runs, the final
    norm is applied at every layer, NDIF's round trip (remote="local") equals local, and
    (with --targets) the targets are single tokens. Each failure says what to fix.

    Exit code: 0 when every check passes, 1 when one fails, 2 on an error.

    Example: logitlens doctor --model gpt2 --targets my_items.jsonl
    """
    from ..doctor import run_doctor, target_words

    if targets is not None:
        target_words(targets)  # a bad file fails before the model loads

    report = run_doctor(open_model(model, device=device), targets)
    if json_output:
        print_json(report.to_json())
    else:
        from rich.table import Table

        table = Table(
            "Check", "Result", "Detail", "Fix", title=f"logitlens doctor: {report.model_name}"
        )
        for check in report.checks:
            result = "[green]pass[/green]" if check.passed else "[bold red]FAIL[/bold red]"
            table.add_row(check.name, result, check.detail, check.fix)
        console.print(table)
        failed = len(report.failures)
        console.print(
            f"{failed} of {len(report.checks)} checks failed." if failed else "All checks passed."
        )
    if not report.passed:
        raise typer.Exit(1)
