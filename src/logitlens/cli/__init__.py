"""The ``logitlens`` command line: one Typer app, commands grouped by topic.

Each topic module registers its commands on ``app``; ``main`` turns logitlens's own
errors into one clear line on stderr (exit code 2) instead of a traceback.
"""

from __future__ import annotations

import sys

from ..errors import LogitLensError
from .common import app, err_console

# Importing a topic module registers its commands.
from . import analysis_commands  # noqa: F401  isort: skip
from . import picture_commands  # noqa: F401  isort: skip
from . import study_commands  # noqa: F401  isort: skip
from . import tuned_commands  # noqa: F401  isort: skip


def main() -> None:
    """Entry point of the ``logitlens`` console script."""
    try:
        app()
    except LogitLensError as error:
        err_console.print(f"[bold red]Error:[/] {error}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted.[/] Results written so far are kept.")
        sys.exit(130)


__all__ = ["app", "main"]
