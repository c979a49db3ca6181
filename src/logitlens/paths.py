"""Where logitlens reads and writes files: the cache, package data, output checks.

Kept apart from the modules that use them so that loading, lenses, training and the
pictures can share these helpers without importing each other.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import InputError

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


def check_output_path(path: str | Path, suffixes: Sequence[str] = FIGURE_SUFFIXES) -> Path:
    """Raise a clear error if ``path`` cannot be written, before any work is done."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
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
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(
            f"No permission to write {str(path)!r}: choose a directory you can write to."
        )
    return path
