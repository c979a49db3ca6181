"""Turn what goes wrong on the way to NDIF and back into one line: the problem and the fix.

Each message names the host or the job, never the API key (``redact`` removes it
from anything a server echoes back).
"""

from __future__ import annotations

import re

from ..errors import RemoteError

KEY_URL = "https://login.ndif.us"
STATUS_HINT = "`logitlens remote status` shows what NDIF hosts and whether it is up"


def redact(text: str, api_key: str | None) -> str:
    """``text`` with the API key, if any, replaced by ``***``."""
    return text.replace(api_key, "***") if api_key else text


def bad_key(host: str, where: str, code: int = 401) -> RemoteError:
    return RemoteError(
        f"NDIF at {host} rejected the API key ({where}: HTTP {code}). Get a key at {KEY_URL}, "
        "then set NDIF_API_KEY (or pass api_key=...)."
    )


def unreachable(host: str, reason: str) -> RemoteError:
    return RemoteError(
        f"Cannot reach NDIF at {host} ({reason}). Check the network, or NDIF_HOST if you "
        f"set it; {STATUS_HINT}."
    )


def not_ndif(host: str, path: str, why: str) -> RemoteError:
    return RemoteError(
        f"{host}{path} did not answer like NDIF ({why}). Check NDIF_HOST (nnsight's "
        "CONFIG.API.HOST): it must be the NDIF API, e.g. https://api.ndif.us."
    )


_MINIMUM = re.compile(r"minimum supported ([0-9][0-9A-Za-z.+-]*[0-9A-Za-z])")


def version_refused(host: str, detail: str) -> RemoteError | None:
    """NDIF's 400 for a client it does not serve (``ndif/services/api/versioning.py``):
    what to upgrade, or which Python NDIF needs; None for any other 400."""
    import platform

    lowered = detail.lower()
    found = _MINIMUM.search(detail)
    if "python version" in lowered:
        needed = f"Python {found.group(1)} or newer" if found else "a newer Python"
        return RemoteError(
            f"NDIF at {host} does not accept Python {platform.python_version()} clients: it "
            f"needs {needed} (server: {detail}). Run logitlens from a virtual environment "
            "with that Python."
        )
    if "nnsight version" in lowered:
        from importlib.metadata import version

        needed = f"nnsight {found.group(1)} or newer" if found else "a newer nnsight"
        return RemoteError(
            f"NDIF at {host} does not accept this client's nnsight {version('nnsight')}: it "
            f"needs {needed} (server: {detail}). Upgrade both: "
            "`pip install --upgrade logitlens nnsight`."
        )
    return None


def http_failure(host: str, code: int, detail: str, job_id: str | None) -> RemoteError:
    """A refused request: a bad key, an old client, unavailable, else a server error."""
    if code in (401, 403) or (code == 400 and "api key" in detail.lower()):
        return bad_key(host, "request", code)
    if code == 400:
        refused = version_refused(host, detail)
        if refused is not None:
            return refused
    if code == 503:
        return RemoteError(
            f"NDIF at {host} is unavailable right now (HTTP 503: {detail}). Try again in a "
            f"few minutes; {STATUS_HINT}."
        )
    job = f"job {job_id}" if job_id else "no job id assigned"
    return RemoteError(
        f"NDIF server error (HTTP {code}: {detail}; {job}). Try again; if it keeps "
        "happening, report it with the job id at https://discuss.ndif.us."
    )


def last_line(traceback_text: str) -> str:
    """The exception line of a server-side traceback (its last non-empty line), or the
    first paragraph of a message NDIF sends without one (it rejected the request)."""
    if "Traceback (most recent call last)" not in traceback_text:
        paragraph = traceback_text.strip().split("\n\n", 1)[0]
        return " ".join(paragraph.split()).rstrip(".") or "no message"
    lines = [line.strip() for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


_INPUT_FAULTS = (
    (
        re.compile(r"architecture on this server doesn't match|UnknownPersistentId", re.I),
        "the model's module tree differs between here and NDIF, most often through "
        "transformers: `logitlens remote status` compares the versions",
    ),
    (
        re.compile(r"out of memory|OutOfMemoryError", re.I),
        "the batch is too large for the "
        "GPU: lower --batch-size (batch_size=...) or analyse fewer positions",
    ),
    (
        re.compile(r"index .* out of (range|bounds)|IndexError", re.I),
        "a layer, position or "
        "target id in the request is outside the model's range: check --layers/--positions",
    ),
    (
        re.compile(r"maximum (context|sequence) length|too long", re.I),
        "a prompt is longer than the model's context: shorten it",
    ),
)


def job_failed(job_id: str, description: str) -> RemoteError:
    """An ERROR status: the remote exception's last line, and the likely cause when it is ours."""
    line = last_line(description)
    for pattern, cause in _INPUT_FAULTS:
        if pattern.search(description):
            return RemoteError(f"NDIF job {job_id} failed: {line}. Likely cause: {cause}.")
    return RemoteError(
        f"NDIF job {job_id} failed: {line}. Rerun with --debug for the server's traceback."
    )


def dropped(host: str, job_id: str | None, status: str, elapsed: float) -> RemoteError:
    return RemoteError(
        f"The connection to NDIF at {host} dropped while job {job_id or '(not started)'} was "
        f"{status} ({elapsed:.0f}s in). Run the command again; runs written with --out "
        "keep finished prompts and resume."
    )


def timed_out(host: str, job_id: str | None, status: str, timeout: float) -> RemoteError:
    what = f"job {job_id} (last status {status})" if job_id else f"a session ({status})"
    return RemoteError(
        f"No result from NDIF at {host} for {what} within the {timeout:g}s timeout. "
        "Raise --timeout (timeout=...) when the queue is long, or try later; "
        f"{STATUS_HINT}."
    )
