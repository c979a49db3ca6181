"""The ``logitlens`` command line: one Typer app, commands grouped by topic.

Each topic module registers its commands on ``app``. ``main`` runs it and turns every
error into one line on stderr (exit code 2): logitlens's own errors, a bad option, an
unwritable file. ``--debug`` (or ``LOGITLENS_DEBUG=1``) shows the traceback instead.
Ctrl-C prints "Interrupted" and what was kept, exit code 130.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
import warnings
from typing import Annotated, Any

import typer
from typer._click import exceptions as click_errors  # typer ships its own click

from ..errors import LogitLensError
from ..options import check_text
from .application import Session, app, note, show_warnings_on_stderr

# Importing a topic module registers its commands.
from . import analysis_commands  # noqa: F401  isort: skip
from . import picture_commands  # noqa: F401  isort: skip
from . import remote_commands  # noqa: F401  isort: skip
from . import study_commands  # noqa: F401  isort: skip
from . import tuned_commands  # noqa: F401  isort: skip
from . import lens_commands  # noqa: F401  isort: skip
from . import dataset_commands  # noqa: F401  isort: skip
from . import generate_commands  # noqa: F401  isort: skip
from . import doctor_commands  # noqa: F401  isort: skip
from . import serve_commands  # noqa: F401  isort: skip
from . import attribute_commands  # noqa: F401  isort: skip


@app.callback()
def _global_options(
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show the full traceback of an error (or LOGITLENS_DEBUG=1)."),
    ] = False,
) -> None:
    """Look inside transformer language models layer by layer."""
    Session.debug = debug or os.environ.get("LOGITLENS_DEBUG", "") not in ("", "0")
    Session.kept = None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``logitlens`` console script."""
    # OpenMP's idle threads spin by default. Where runnable threads outnumber cores (a
    # shared machine, a busy laptop, CI), every one of the few hundred small ops of a short
    # forward pass then waits for a descheduled spinner: a warm `top` spent 1.6 s in its
    # forward pass instead of 0.13 s (benchmarks/bench_cli.py). Sleeping threads give the
    # same numbers; set OMP_WAIT_POLICY to choose otherwise. Read when torch loads, below.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    command = typer.main.get_command(app)
    previous = signal.getsignal(signal.SIGINT)
    watch = previous is signal.default_int_handler and threading.current_thread() is (
        threading.main_thread()
    )
    if watch:
        previous_alarm = signal.getsignal(signal.SIGALRM)
        signal.signal(signal.SIGINT, _record_interrupt)
    Session.interrupted = False
    previous_warning_format = show_warnings_on_stderr()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        check_arguments(args)
        code = command.main(args=args, prog_name="logitlens", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as error:
        error.show()
        code = 0
    except click_errors.UsageError as error:
        where = error.ctx.command_path if error.ctx else "logitlens"
        _fail(f"{error.format_message()} (see: {where} --help)")
    except click_errors.ClickException as error:
        _fail(error.format_message())
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except Exception as error:
        if not Session.interrupted:
            _report(error)
        code = 130  # Ctrl-C turned into another error on its way up (see _record_interrupt)
    finally:
        warnings.formatwarning = previous_warning_format
        if watch:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_alarm)
            signal.signal(signal.SIGINT, previous)
    if code == 130:
        note(f"Interrupted. {Session.kept_now()}")
        _forget_the_interrupt()
    sys.exit(code or 0)


def check_arguments(args: list[str]) -> None:
    """Refuse an argument that is not UTF-8 (a Latin-1 terminal), naming it, before parsing.

    Every prompt, target, path and option value enters here, decoded by Python with
    ``surrogateescape``; one check covers all commands. The name of a file that exists is
    let through: Linux file names may be any bytes, and Python opens them as given.
    """
    for index, arg in enumerate(args):
        if os.path.lexists(arg):
            continue
        after = f" (after {args[index - 1]})" if index and args[index - 1].startswith("-") else ""
        check_text(arg, f"Argument {index + 1}{after}")


_RETRY = 0.05  # seconds between looks at whether a deferred Ctrl-C may be raised yet


def _record_interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C: remember it, then raise KeyboardInterrupt as Python does.

    Some libraries turn the KeyboardInterrupt into another error on its way up (a
    transformers lazy import that is interrupted raises "Could not import module ..."),
    which must still end as an interrupt, not as a bug report.

    Inside an import the raise waits until the import is over: raised while a compiled
    extension's initialisation runs Python (torch's pybind11 modules), the exception
    crosses C++ code that cannot pass it on, and the process aborts (exit -6).
    """
    Session.interrupted = True
    if _inside_an_import(frame):
        signal.signal(signal.SIGALRM, _raise_when_imported)
        signal.setitimer(signal.ITIMER_REAL, _RETRY)
        return
    signal.default_int_handler(signum, frame)


def _raise_when_imported(signum: int, frame: Any) -> None:
    """The deferred Ctrl-C: raised at the first look that finds no import under way."""
    if _inside_an_import(frame):
        signal.setitimer(signal.ITIMER_REAL, _RETRY)
        return
    raise KeyboardInterrupt


def _inside_an_import(frame: Any) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back
    return False


def _report(error: Exception) -> None:
    """One line for an error that ended a command (exit 2; 1 for a bug in logitlens)."""
    if isinstance(error, LogitLensError):
        _fail(str(error), error)
    if isinstance(error, OSError):  # a file the library did not expect to fail
        _fail(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), error)
    _fail(
        f"Unexpected {type(error).__name__}: {error}. This is a bug in logitlens: rerun "
        "with --debug and report the traceback.",
        error,
        code=1,
    )


def _forget_the_interrupt() -> None:
    """Exit with 130, not by SIGINT, after a handled Ctrl-C.

    When Ctrl-C lands while C code runs Python source (an extension's import, e.g.
    torch's), CPython flags the interrupt as unhandled and kills itself with SIGINT at
    exit, however it was handled (exit status -2, about one run in five). Running a
    trivial source string through the same C path clears that flag.
    """
    import ctypes

    ctypes.pythonapi.PyRun_SimpleString(b"pass")


def _fail(message: str, error: BaseException | None = None, code: int = 2) -> None:
    """One line on stderr, never wrapped; the traceback only under --debug."""
    if error is not None and (
        Session.debug or os.environ.get("LOGITLENS_DEBUG", "") not in ("", "0")
    ):
        traceback.print_exception(error)
        if getattr(error, "server_traceback", None):
            note(f"NDIF's traceback:\n{error.server_traceback}")
    note("Error: " + " ".join(message.split()))
    sys.exit(code)


__all__ = ["app", "main"]
