"""``logitlens remote status``: what NDIF hosts right now."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from .common import JsonOption, app, console, print_json

remote_app = typer.Typer(help="NDIF, the remote service: what it hosts.", no_args_is_help=True)
app.add_typer(remote_app, name="remote")


@remote_app.command()
def status(json_output: JsonOption = False):
    """List the models NDIF hosts (running ones first), from NDIF's status API."""
    from ..remote import hosted_models

    models = hosted_models()
    if json_output:
        print_json([{**asdict(m), "usable": m.usable} for m in models])
        return
    table = Table("Model (hub id)", "State", "Level", "Revision")
    for model in models:
        style = None if model.usable else "dim"
        table.add_row(model.repo_id, model.state, model.level, model.revision, style=style)
    console.print(table)
    running = sum(m.usable for m in models)
    console.print(f"{running} of {len(models)} running. Use one with --model ID --remote.")
