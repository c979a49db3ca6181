"""The ``logitlens`` command line: one Typer app, commands grouped by topic.

Each topic module registers its commands on ``app``; ``main`` turns logitlens's own
errors into one clear line on stderr (exit code 2) instead of a traceback.
"""

from __future__ import annotations

import sys
import traceback

from ..errors import LogitLensError
from .common import Session, app, err_console

# Importing a topic module registers its commands.
from . import analysis_commands  # noqa: F401  isort: skip
from . import picture_commands  # noqa: F401  isort: skip
from . import remote_commands  # noqa: F401  isort: skip
from . import study_commands  # noqa: F401  isort: skip
from . import tuned_commands  # noqa: F401  isort: skip
from . import dataset_commands  # noqa: F401  isort: skip


def main() -> None:
    """Entry point of the ``logitlens`` console script."""
    try:
        app()
    except LogitLensError as error:
        if Session.debug:
            traceback.print_exc()
            if getattr(error, "server_traceback", None):
                print(f"NDIF's traceback:\n{error.server_traceback}", file=sys.stderr)
        err_console.print(f"[bold red]Error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as exit_:
        if exit_.code == 130:  # Typer turns Ctrl-C into a silent exit 130
            _interrupted()
        raise


def _interrupted() -> None:
    err_console.print(f"[yellow]Interrupted.[/] {Session.kept}", soft_wrap=True)
    sys.exit(130)


__all__ = ["app", "main"]
