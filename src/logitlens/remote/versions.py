"""This client's nnsight, transformers and torch against NDIF's, from the server's ``/env``.

The comparison is nnsight's own (``nnsight.ndif.EnvComparison``, what
``nnsight.compare()`` returns). A different nnsight, transformers or torch on the
server can break a job where it is hardest to read: the request may not
deserialize there, the model's module tree may differ, or the result may not load
here. ``check_environment`` says so in one line (a warning) before the first job;
``logitlens remote status`` prints the whole comparison.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

CRITICAL = ("nnsight", "transformers", "torch")
"""The packages whose versions must agree between client and server."""


class VersionWarning(UserWarning):
    """nnsight, transformers or torch differ between this client and NDIF."""


@dataclass(frozen=True)
class EnvironmentComparison:
    """Python and the critical packages, here and on NDIF (``"-"``: not installed)."""

    local_python: str
    remote_python: str
    packages: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def mismatches(self) -> dict[str, tuple[str, str]]:
        """The critical packages whose versions differ: name -> (here, NDIF)."""
        return {name: pair for name, pair in self.packages.items() if pair[0] != pair[1]}

    @property
    def python_matches(self) -> bool:
        return self.local_python.split(".")[:2] == self.remote_python.split(".")[:2]

    def warning(self) -> str | None:
        """One line naming every critical mismatch and the fix, or None."""
        if not self.mismatches:
            return None
        there = ", ".join(f"{name} {remote}" for name, (_, remote) in self.mismatches.items())
        here = ", ".join(f"{name} {local}" for name, (local, _) in self.mismatches.items())
        pins = " ".join(f"{name}=={remote}" for name, (_, remote) in self.mismatches.items())
        return (
            f"NDIF runs {there}; this client has {here}. A mismatch can break a job "
            f"(the request or its result may not deserialize): `pip install {pins}` to "
            "match; `logitlens remote status` shows the comparison."
        )


_CHECKED: dict[str, EnvironmentComparison | None] = {}


def compare_environment(timeout: float = 30.0) -> EnvironmentComparison:
    """nnsight's comparison of this environment with NDIF's ``/env``, reduced to
    Python and the critical packages. Raises a RemoteError when ``/env`` cannot be read."""
    import httpx
    from nnsight import CONFIG, ndif

    from . import failures

    host = CONFIG.API.HOST
    try:
        remote = ndif._get("/env", timeout=(min(timeout, 10.0), timeout))
    except httpx.HTTPStatusError as error:
        detail = " ".join(error.response.text.split())[:200]
        raise failures.http_failure(host, error.response.status_code, detail, None) from None
    except httpx.HTTPError as error:
        raise failures.unreachable(host, str(error) or type(error).__name__) from None
    except ValueError:
        raise failures.not_ndif(host, "/env", "the answer is not JSON") from None
    if not isinstance(remote, dict) or not isinstance(remote.get("packages"), dict):
        raise failures.not_ndif(host, "/env", "no 'packages' object in the answer")
    comparison = ndif.EnvComparison(_local_env(), remote)
    packages = {
        name: (comparison.packages[name]["local"], comparison.packages[name]["remote"])
        for name in CRITICAL
        if name in comparison.packages
    }
    return EnvironmentComparison(comparison.local_python, comparison.remote_python, packages)


def _local_env() -> dict:
    """What ``nnsight.ndif.get_local_env`` reports, for the packages compared here only
    (its full scan walks every module on ``sys.path``)."""
    import sys
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in CRITICAL:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "-"
    return {"python_version": sys.version, "packages": packages}


def check_environment(timeout: float = 10.0) -> EnvironmentComparison | None:
    """Warn once per NDIF host (VersionWarning, one line) when the critical packages
    differ. Silent when the server does not report its environment: the job itself
    then shows whether it runs."""
    from nnsight import CONFIG

    from ..errors import RemoteError

    host = CONFIG.API.HOST
    if host not in _CHECKED:
        try:
            _CHECKED[host] = compare_environment(timeout)
        except RemoteError:
            _CHECKED[host] = None
        comparison = _CHECKED[host]
        message = comparison.warning() if comparison is not None else None
        if message:
            warnings.warn(message, VersionWarning, stacklevel=2)
    return _CHECKED[host]
