"""Running on NDIF: a client that fails clearly and never hangs, and what NDIF hosts.

- :mod:`~logitlens.remote.backend`: ``NdifBackend``, nnsight's client with a deadline,
  a stderr progress line and one-line errors;
- :mod:`~logitlens.remote.failures`: the messages, one per way a remote run fails;
- :mod:`~logitlens.remote.hosting`: NDIF's hosted models, and the local meta copy of one;
- :mod:`~logitlens.remote.weights`: a hosted model's final norm and head, fetched here.

Where a trace runs (here, ``remote="local"`` or NDIF) is decided in one place:
``LensModel.trace`` and ``LensModel.generate`` in :mod:`logitlens.loading`.
"""

from __future__ import annotations

import os
from typing import Any

from .backend import DEFAULT_TIMEOUT, NdifBackend, Progress
from .hosting import HostedModel, build_remote_model, check_hosted, hosted_models

BLOCKING_ENV = "LOGITLENS_NDIF_BLOCKING"
"""Set to ``0`` to wait for NDIF jobs by polling (no websocket): nnsight's non-blocking mode."""


def ndif_backend(nn_model: Any, timeout: float) -> NdifBackend:
    """NDIF's client for one trace of ``nn_model`` (an nnsight model hosted on NDIF), with
    the deadline ``timeout``; it polls instead of holding a websocket when
    ``LOGITLENS_NDIF_BLOCKING=0``. ``LensModel.trace`` decides when it is used."""
    return NdifBackend(
        nn_model.to_model_key(),
        timeout=timeout,
        env=nn_model._remoteable_get_env(),
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
    "ndif_backend",
]
