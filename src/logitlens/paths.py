"""Where logitlens reads and writes files: the cache, package data, output checks.

Kept apart from the modules that use them so that loading, lenses, training and the
pictures can share these helpers without importing each other.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError
from .storage import carries_marker, refuse_foreign, write_error

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")
"""File types the plots can be saved as (matplotlib picks the format by suffix)."""
REPORT_SUFFIXES = (".html", ".htm")
"""File types of the self-contained HTML report."""


def cache_dir() -> Path:
    """Where logitlens keeps converted models and lenses (honours ``XDG_CACHE_HOME``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "logitlens"


def package_file(package: str, filename: str) -> Path | None:
    """A data file shipped inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    for location in list(spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate
    return None


def check_output_path(path: str | Path, suffixes: Sequence[str] | None = FIGURE_SUFFIXES) -> Path:
    """Raise a clear error if ``path`` cannot be written, before any work is done.

    Refuses directories, FIFOs and devices (never opened: reading ``/dev/full`` or a
    FIFO would never end), a missing or read-only directory, and, when ``suffixes``
    is given, a name whose suffix does not say the file type.
    """
    path = Path(path).expanduser()
    if path.exists() or path.is_symlink():
        check_regular_file(path, "write")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise InputError(
            f"Cannot tell the file type of {str(path)!r}: end the name with one of "
            f"{', '.join(suffixes)}."
        )
    parent = path.parent.resolve()
    if not parent.is_dir():
        raise InputError(
            f"The directory {str(parent)!r} does not exist: create it first "
            f"(mkdir -p {parent}) or choose another output path."
        )
    problem = directory_write_problem(parent)
    if problem is None and path.exists() and not os.access(path, os.W_OK):
        problem = PermissionError(errno.EACCES, "Permission denied")
    if problem is not None:
        raise write_error(path, problem)
    return path


def check_document_output(
    path: str | Path, suffixes: Sequence[str], what: str, *, force: bool = False
) -> Path:
    """:func:`check_output_path`, and refuse to replace a picture or report that
    logitlens did not write (it carries :data:`~logitlens.storage.MARKER`) unless ``force``."""
    path = check_output_path(path, suffixes)
    refuse_foreign(path, carries_marker, what, force=force)
    return path


def check_regular_file(path: str | Path, action: str = "read") -> Path:
    """``path`` itself if it is a regular file; a clear error for directories, FIFOs, devices."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if action == "read":
            raise InputError(f"No such file {str(path)!r}: check the path.") from None
        return path
    except OSError as error:
        raise InputError(f"Cannot {action} {str(path)!r}: {error.strerror}.") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{str(path)!r} is a directory: give a file name inside it.")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
        raise InputError(f"{str(path)!r} is {kind}, not a regular file: give a file name.")
    return path


def read_text_file(path: str | Path, error: type[Exception] = InputError) -> str:
    """The text of a UTF-8 file (a byte-order mark dropped): the one way user text files
    are read, so a Latin-1 or binary file is one line naming the file, line and byte.

    ``error`` is the exception type to raise (e.g. ``LensFileError`` for a lens folder).
    """
    path = check_regular_file(path, "read")
    try:
        data = path.read_bytes()
    except OSError as failure:
        raise error(f"Cannot read {str(path)!r}: {failure.strerror}.") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as failure:
        line = data[: failure.start].count(b"\n") + 1
        raise error(
            f"{path}:{line} is not UTF-8 text (byte 0x{data[failure.start]:02x} at offset "
            f"{failure.start}): save the file as UTF-8, e.g. iconv -f latin1 -t utf-8."
        ) from None


def text_lines(text: str) -> list[str]:
    """``text`` split at line feeds only (``\\r\\n`` too), never inside a line.

    ``str.splitlines`` also splits at U+2028, U+0085 and other separators that a JSON
    string may hold verbatim, which would cut a valid JSONL record in two.
    """
    return [line.removesuffix("\r") for line in text.split("\n")]


def directory_write_problem(directory: Path) -> OSError | None:
    """Why no file can be created in ``directory`` (read-only mount, permissions), if so.

    A real probe file, because ``os.access`` ignores read-only mounts (and root).
    """
    if not directory.is_dir():
        return FileNotFoundError(errno.ENOENT, "No such directory")
    try:
        handle, probe = tempfile.mkstemp(prefix=".logitlens-probe-", dir=directory)
    except OSError as error:
        return error
    os.close(handle)
    os.unlink(probe)
    return None


def writable_directory(directory: Path) -> bool:
    """Can a file be created in ``directory``?"""
    return directory_write_problem(directory) is None
