"""Options, model loading and output shared by every CLI command."""

from __future__ import annotations

import json
import warnings
from typing import Annotated, Any

import typer
from rich.console import Console

from ..errors import InputError
from ..loading import LensModel, load_model

app = typer.Typer(
    help="Look inside transformer language models layer by layer (logit, raw and tuned lenses).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Hub id or local directory; default: the bundled SmolLM2-135M (offline).",
    ),
]
RemoteOption = Annotated[bool, typer.Option("--remote", help="Run on NDIF (needs NDIF_API_KEY).")]
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout", help="With --remote: seconds one NDIF job may take, queue included (600)."
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="cpu, cuda, cuda:1 ..., or auto to spread a large model over all GPUs "
        "(device_map='auto'). Default: cuda if present, else cpu.",
    ),
]
LensOption = Annotated[str, typer.Option("--lens", "-l", help="logit, raw or tuned.")]
TunedPathOption = Annotated[
    str | None, typer.Option("--tuned-path", help="Trained tuned-lens file, for --lens tuned.")
]
LayersOption = Annotated[
    str | None, typer.Option("--layers", help="All by default; e.g. 0,5,-1 or 10:20 or embed,0:5.")
]
PositionsOption = Annotated[
    str, typer.Option("--positions", help="last (default), all, or indices like 0,-1.")
]
KOption = Annotated[int, typer.Option("--k", "-k", help="Top tokens kept per layer.")]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON on stdout, nothing else.")
]
MetricsOption = Annotated[
    str | None,
    typer.Option("--metrics", help="Extra metrics, comma separated: entropy,kl,final_rank."),
]


def open_model(
    model: str | None,
    remote: bool,
    device: str | None = None,
    timeout: float | None = None,
) -> LensModel:
    """Load the model named on the command line, with a status line on stderr."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the status line below says what is happening
    with err_console.status(f"Loading {model or 'the bundled SmolLM2-135M'}..."):
        if device == "auto":
            return load_model(model, remote=remote, device_map="auto", timeout=timeout)
        return load_model(model, remote=remote, device=device, timeout=timeout)


class Session:
    """What the entry point reports when a command stops early (see ``cli.main``)."""

    debug = False
    kept = "Nothing was written."


def keep(description: str) -> None:
    """Say what an interrupted command leaves behind, e.g. a resumable output file."""
    Session.kept = description


@app.callback()
def options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks (and NDIF's) on errors.")
    ] = False,
) -> None:
    """Look inside transformer language models layer by layer."""
    Session.debug = debug
    Session.kept = "Nothing was written."


def parse_metrics(metrics: str | None, *always: str) -> list[str]:
    chosen = [m.strip() for m in (metrics or "").split(",") if m.strip()]
    return list(dict.fromkeys([*always, *chosen]))


def parse_target(target: str) -> str | int:
    """``--target`` text, or a token id written as ``id:1234``."""
    if target.startswith("id:"):
        try:
            return int(target[3:])
        except ValueError:
            raise InputError(f"Bad token id {target!r}: write it as id:1234.") from None
    return target


def print_json(payload: Any) -> None:
    """Write JSON to stdout without rich markup or wrapping."""
    typer.echo(json.dumps(payload, ensure_ascii=False))


def show_warnings_on_stderr() -> None:
    """Show library warnings (e.g. multi-token targets) as one yellow line each."""

    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        err_console.print(f"[yellow]Warning:[/] {message}", highlight=False)

    warnings.showwarning = show


show_warnings_on_stderr()
