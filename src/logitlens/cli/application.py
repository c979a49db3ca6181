"""The ``logitlens`` Typer app, the state of one run, and how a command talks to the user.

Every topic module registers its commands on :data:`app`; :class:`Session` is what the
entry point (:func:`logitlens.cli.main`) reports when a command stops early; ``note``,
``say`` and ``print_json`` keep stdout for results (one JSON document under ``--json``)
and stderr for everything else.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import typer
from rich.console import Console

from .. import jsontext

app = typer.Typer(
    help="Look inside transformer language models layer by layer "
    "(logit, raw, tuned and Jacobian lenses)."
    "\n\nExamples:\n\n"
    "  logitlens top 'The capital of France is'\n\n"
    "  logitlens track 'Why do electricians make good swimmers? Because they know the' "
    "-t ' current'\n\n"
    "  logitlens grid 'The Eiffel Tower is in the city of' -o grid.png\n\n"
    "Errors are one line on stderr (exit code 2); --debug or LOGITLENS_DEBUG=1 shows the "
    "traceback.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help: flags shown as flags, fast to print
    pretty_exceptions_enable=False,
    add_completion=False,
)


console = Console()
err_console = Console(stderr=True, soft_wrap=True)


class Session:
    """What the entry point reports when a command stops early (see ``cli.main``)."""

    debug = False
    kept: Callable[[], str] | None = None
    interrupted = False

    @classmethod
    def kept_now(cls) -> str:
        """What an interrupted command left on disk, read from the disk now."""
        return cls.kept() if cls.kept is not None else "Nothing was written."


def keep(describe: Callable[[], str]) -> None:
    """Say how to tell what an interrupted command leaves behind (read when it stops,
    from the disk: e.g. how many prompts a resumable output file holds)."""
    Session.kept = describe


def note(text: str) -> None:
    """One plain line on stderr (never wrapped, never on stdout)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def say(text: str, json_output: bool = False) -> None:
    """A line for the user: stdout normally, stderr under --json."""
    if json_output:
        note(text)
    else:
        console.print(text, highlight=False, soft_wrap=True)


def print_json(payload: Any) -> None:
    """Write JSON to stdout without rich markup or wrapping."""
    typer.echo(jsontext.dumps(payload, ensure_ascii=False))


def as_dict(value: Any) -> dict[str, Any]:
    """A dataclass as a plain dict (for JSON payloads)."""
    return {item.name: getattr(value, item.name) for item in fields(value)}


def show_warnings_on_stderr() -> Callable[..., str]:
    """Print library warnings (e.g. multi-token targets) as one plain line each,
    ``Warning: ...``, on stderr where Python writes them.

    Installed by :func:`logitlens.cli.main` for the length of a command (not when the
    package is imported), by replacing the warnings' format only: code that records
    warnings (``warnings.catch_warnings(record=True)``, ``pytest.warns``) still gets
    them. Returns the format it replaced, to restore.
    """

    def one_line(message: Any, category: Any, filename: Any, lineno: Any, line: Any = None) -> str:
        return f"Warning: {message}\n"

    previous = warnings.formatwarning
    warnings.formatwarning = one_line
    return previous
