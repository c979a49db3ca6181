"""How logitlens writes files: atomically, under a lock, and never over a file not its own.

Every writer (results files, studies, lens files and checkpoints, pictures, reports, the
remote weight cache) goes through this module, so one set of rules holds everywhere:

- :func:`write_atomic` writes a temporary sibling, fsyncs it, renames it over the target
  and fsyncs the directory. At every moment the path holds either the old file or the
  whole new one: a full disk, ``kill -9`` or Ctrl-C leaves the old file as it was and no
  temporary behind. New files get the user's umask (``0o666 & ~umask``); a replaced
  file keeps its permission bits.
- :func:`open_locked` opens a file for appending under an exclusive ``flock``. The lock
  follows the file through :func:`rewrite_locked` (the new file is locked before it is
  renamed into place), so a second process never writes beside the first.
- :func:`refuse_foreign`: logitlens never replaces a file it did not write, unless told
  to (``force``; on the command line ``--force``).
- :func:`manifest_differences`: what differs between a saved manifest (a results
  file's header, a study's ``manifest.json``) and this run's, in words.
- :func:`write_error`: one line for a failed write, saying what is on disk now.

Setting ``LOGITLENS_PAUSE_IN_REWRITE`` to a path makes the window between writing the
temporary and renaming it observable (for tests that kill a writer inside it): the
writer creates that file and sleeps until it is removed (at most a minute).
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import InputError, OutputError

PAUSE_VARIABLE = "LOGITLENS_PAUSE_IN_REWRITE"
NOTHING_WRITTEN = "Nothing was written."

Content = bytes | str | Callable[[Path], object]
"""What :func:`write_atomic` writes: bytes, UTF-8 text, or a function writing a path."""


def write_error(path: str | Path, error: OSError, kept: str | None = None) -> OutputError:
    """One line for a failed write (full disk, read-only place, no permission, other).

    ``kept`` says what is on disk now; by default "Nothing was written." when ``path``
    does not exist, else that it was left as it was.
    """
    reason = {
        errno.ENOSPC: "the disk is full: free some space or choose another directory",
        errno.EDQUOT: "the disk quota is exceeded: free some space or choose another directory",
        errno.EROFS: "the file system is read-only: choose a writable directory",
        errno.EACCES: "no permission: choose a directory you can write to",
        errno.EPERM: "no permission: choose a directory you can write to",
        errno.ENOENT: "its directory does not exist: create it first",
    }.get(error.errno, f"{error.strerror or error}")
    if kept is None:
        kept = left_as_it_was(path)
    return OutputError(f"Could not write {str(path)!r}: {reason}. {kept}")


def left_as_it_was(path: str | Path) -> str:
    """What a failed atomic write of ``path`` left: nothing, or the old file untouched."""
    path = Path(path).expanduser()
    return f"{str(path)!r} was left as it was." if path.exists() else NOTHING_WRITTEN


def umask() -> int:
    """The process's umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """Permission bits for a new ``path``: the old file's, else ``0o666`` less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~umask()


def write_atomic(path: str | Path, content: Content) -> Path:
    """Write ``content`` to ``path`` through a temporary sibling, fsync and rename.

    ``content`` is bytes, text (written as UTF-8) or a function that writes the file
    at the path it is given (e.g. ``lambda p: table.write(p)``). Any failure leaves
    ``path`` as it was.

    Raises:
        OutputError: the file could not be written (the message says what is kept).
    """
    path = Path(path).expanduser()
    _replace(path, content, hold_lock=False).close()
    return path


def rewrite_locked(path: str | Path, data: bytes) -> IO[bytes]:
    """Replace ``path`` by ``data`` like :func:`write_atomic`, and return the new file
    open (for reading and appending) and exclusively locked before anyone can open it.

    For a file held with :func:`open_locked`: the old file's lock ends when its handle
    is closed, while the path already names the new, locked file.
    """
    path = Path(path).expanduser()
    return _replace(path, data, hold_lock=True)


def _replace(path: Path, content: Content, hold_lock: bool) -> IO[bytes]:
    """The temporary, fsync, (lock,) rename, fsync of the directory; the open temporary."""
    try:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise write_error(path, error) from None
    temporary = Path(name)
    stream = os.fdopen(handle, "r+b", buffering=0)
    mode = _mode_for(path)
    try:
        os.fchmod(stream.fileno(), mode)  # mkstemp's 0600 would hide the file
        if callable(content):
            content(temporary)
            os.chmod(temporary, mode)  # a writer may have made a file of its own there
            with open(temporary, "rb") as written:
                os.fsync(written.fileno())
        else:
            write_all(stream, content.encode("utf-8") if isinstance(content, str) else content)
            os.fsync(stream.fileno())
        if hold_lock:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX)
        _pause_in_rewrite()
        os.replace(temporary, path)
        fsync_directory(path.parent)
    except BaseException as error:
        stream.close()
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            raise write_error(path, error) from None
        raise
    return stream


def remove_stale_temporaries(path: str | Path) -> None:
    """Delete the temporaries a killed :func:`write_atomic` of ``path`` left behind.

    Call it only while holding the lock that every writer of ``path`` takes, so no
    temporary still being written is removed.
    """
    path = Path(path).expanduser()
    for stale in path.parent.glob(f".{_glob_escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def _glob_escape(name: str) -> str:
    """``name`` with glob's special characters taken literally."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def write_all(stream: IO[bytes], data: bytes) -> None:
    """Write every byte of ``data`` to an unbuffered stream (raw writes may be short)."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (file systems that cannot: skipped)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(handle)


def _pause_in_rewrite() -> None:
    marker = os.environ.get(PAUSE_VARIABLE)
    if not marker:
        return
    Path(marker).touch()
    deadline = time.monotonic() + 60
    while Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def open_locked(path: str | Path, busy: str, error: type[Exception] = OutputError) -> IO[bytes]:
    """``path`` opened for reading and appending (created if missing, never truncated),
    exclusively locked; raise ``error(busy)`` when another process holds it.

    The lock is on the file the path names now: when another process renamed a new
    file into place after this one was opened, the new one is opened and locked.
    """
    path = Path(path).expanduser()
    while True:
        try:
            # unbuffered: a failed write must not be retried by a flush when it closes
            stream = open(path, "a+b", buffering=0)  # noqa: SIM115  returned to the caller
        except OSError as failure:
            raise write_error(path, failure) from None
        try:
            fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            stream.close()
            raise error(busy) from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        opened = os.fstat(stream.fileno())
        if current is not None and (current.st_ino, current.st_dev) == (
            opened.st_ino,
            opened.st_dev,
        ):
            return stream
        stream.close()


@contextmanager
def locked(path: str | Path, busy: str, error: type[Exception] = OutputError) -> Iterator[None]:
    """Hold :func:`open_locked` on ``path`` for the block (the kernel frees it on kill -9)."""
    with open_locked(path, busy, error):
        yield


def refuse_foreign(
    path: str | Path, is_ours: Callable[[Path], bool], what: str, *, force: bool = False
) -> None:
    """Refuse to replace an existing ``path`` that logitlens did not write.

    ``is_ours(path)`` says whether the file is one logitlens wrote (a lens file, a
    checkpoint); ``what`` names the kind of file this writer makes. ``force`` allows it.

    Raises:
        InputError: the file exists, is not ours, and ``force`` is not set.
    """
    path = Path(path).expanduser()
    if force or not path.is_file() or path.stat().st_size == 0 or is_ours(path):
        return
    raise InputError(
        f"{str(path)!r} exists and is not a {what} written by logitlens; logitlens will not "
        "overwrite it. Choose another path, or pass --force (library: force=True) to replace it."
    )


MARKER = "logitlens"
"""The name pictures and reports carry in their metadata (PNG Software, SVG and PDF
Creator, the HTML generator tag), so logitlens knows them as its own."""


def carries_marker(path: str | Path) -> bool:
    """Does ``path`` name logitlens (:data:`MARKER`) in its first or last 64 KiB?"""
    window = 1 << 16
    try:
        with open(path, "rb") as stream:
            head = stream.read(window)
            stream.seek(max(0, stream.seek(0, os.SEEK_END) - window))
            tail = stream.read(window)
    except OSError:
        return False
    return MARKER.encode() in head or MARKER.encode() in tail


def manifest_differences(
    saved: dict[str, Any],
    wanted: dict[str, Any],
    parts: Iterable[str],
    defaults: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """What differs between a saved manifest and this run's, one phrase per part,
    e.g. ``options (k): 10 -> 3``.

    ``parts`` are the manifest's sections compared (e.g. model, lens, options); a
    section that is a dict is compared key by key and the keys that differ are named
    with their old and new values. ``defaults[part]`` fills keys a manifest written by
    an older version lacks (on both sides). A weight hash that is ``None`` on either side (a remote
    model: its weights are not here) is not compared.
    """
    found = []
    for part in parts:
        old, new = saved.get(part), wanted.get(part)
        if not isinstance(old, dict) or not isinstance(new, dict):
            if old != new:
                found.append(f"{part}: {_shown(old)} -> {_shown(new)}")
            continue
        filled = (defaults or {}).get(part, {})
        old, new = {**filled, **old}, {**filled, **new}
        keys = [
            key
            for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)
            and not (key.endswith("sha256") and None in (old.get(key), new.get(key)))
        ]
        if len(keys) == 1:
            found.append(
                f"{part} ({keys[0]}): {_shown(old.get(keys[0]))} -> {_shown(new.get(keys[0]))}"
            )
        elif keys:
            changes = ", ".join(f"{k} {_shown(old.get(k))} -> {_shown(new.get(k))}" for k in keys)
            found.append(f"{part} ({', '.join(keys)}): {changes}")
    return found


def _shown(value: Any) -> str:
    """A manifest value in a message: hashes shortened, long values cut."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
