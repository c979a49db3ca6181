"""``logitlens remote status``: what NDIF hosts right now, and its versions against ours."""

from __future__ import annotations

from dataclasses import asdict

import typer
from rich.table import Table

from .application import app, console, print_json
from .flags import JsonOption

remote_app = typer.Typer(
    help="NDIF, the remote service: what it hosts, and its versions.", no_args_is_help=True
)
app.add_typer(remote_app, name="remote")


@remote_app.command()
def status(json_output: JsonOption = False):
    """List the models NDIF hosts (running ones first) and compare its nnsight,
    transformers, torch and Python with this client's (NDIF's /status and /env)."""
    from ..errors import RemoteError
    from ..remote import hosted_models
    from ..remote.versions import compare_environment

    models = hosted_models()
    try:
        environment = compare_environment()
        unavailable = None
    except RemoteError as error:
        environment, unavailable = None, str(error)
    if json_output:
        print_json(
            {
                "models": [{**asdict(m), "usable": m.usable} for m in models],
                "environment": None
                if environment is None
                else {
                    "python": {
                        "local": environment.local_python,
                        "remote": environment.remote_python,
                    },
                    "packages": {
                        name: {"local": local, "remote": remote, "match": local == remote}
                        for name, (local, remote) in environment.packages.items()
                    },
                },
            }
        )
        return
    table = Table("Model (hub id)", "Level", "State", "Revision")
    for model in models:
        style = None if model.level == "HOT" and model.state == "RUNNING" else "dim"
        table.add_row(model.repo_id, model.level, model.state, model.revision, style=style)
    console.print(table)
    running = sum(m.level == "HOT" and m.state == "RUNNING" for m in models)
    warm = sum(m.level == "WARM" for m in models)
    console.print(
        f"{running} running, {warm} warm (served after a short wait), "
        f"{len(models) - running - warm} other. Use one with --model ID --remote."
    )
    if environment is None:
        console.print(f"Versions not compared: {unavailable}", highlight=False)
        return
    versions = Table("", "This client", "NDIF", "")
    rows = [("python", environment.local_python, environment.remote_python)]
    rows += [(name, *pair) for name, pair in environment.packages.items()]
    for name, local, remote in rows:
        same = (
            local.split(".")[:2] == remote.split(".")[:2] if name == "python" else local == remote
        )
        versions.add_row(name, local, remote, "same" if same else "DIFFERENT")
    console.print(versions)
    message = environment.warning()
    if message:
        console.print(message, highlight=False)
