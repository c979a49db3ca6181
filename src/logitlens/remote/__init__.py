"""Running on NDIF: a client that fails clearly and never hangs, and what NDIF hosts.

- :mod:`~logitlens.remote.backend`: ``NdifBackend``, nnsight's client with a deadline,
  a stderr progress line and one-line errors;
- :mod:`~logitlens.remote.failures`: the messages, one per way a remote run fails;
- :mod:`~logitlens.remote.hosting`: NDIF's hosted models, and the local meta copy of one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .backend import DEFAULT_TIMEOUT, NdifBackend, Progress
from .hosting import HostedModel, build_remote_model, check_hosted, hosted_models

if TYPE_CHECKING:
    from ..loading import LensModel


BLOCKING_ENV = "LOGITLENS_NDIF_BLOCKING"
"""Set to ``0`` to wait for NDIF jobs by polling (no websocket): nnsight's non-blocking mode."""


def trace_backend(model: LensModel, timeout: float | None = None) -> NdifBackend | None:
    """The backend for one trace of ``model`` (a LensModel): NDIF's when remote, else None."""
    import os

    if model.remote is not True:
        return None
    return NdifBackend(
        model.nn.to_model_key(),
        timeout=timeout or model.timeout,
        env=model.nn._remoteable_get_env(),
        blocking=os.environ.get(BLOCKING_ENV, "1").strip().lower() not in ("0", "false", "no"),
    )


__all__ = [
    "BLOCKING_ENV",
    "DEFAULT_TIMEOUT",
    "HostedModel",
    "NdifBackend",
    "Progress",
    "build_remote_model",
    "check_hosted",
    "hosted_models",
    "trace_backend",
]
