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


def bad_key(host: str, where: str) -> RemoteError:
    return RemoteError(
        f"NDIF at {host} rejected the API key ({where}: HTTP 401). Get a key at {KEY_URL}, "
        "then set NDIF_API_KEY (or pass api_key=...)."
    )


def unreachable(host: str, reason: str) -> RemoteError:
    return RemoteError(
        f"Cannot reach NDIF at {host} ({reason}). Check the network, or NDIF_HOST if you "
        f"set it; {STATUS_HINT}."
    )


def http_failure(host: str, code: int, detail: str, job_id: str | None) -> RemoteError:
    """A refused request: 401 bad key, 503 unavailable, anything else a server error."""
    if code in (401, 403):
        return bad_key(host, "request")
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
    """The exception line of a server-side traceback (its last non-empty line)."""
    lines = [line.strip() for line in traceback_text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


_INPUT_FAULTS = (
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
