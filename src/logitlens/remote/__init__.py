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

from .backend import DEFAULT_TIMEOUT, NdifBackend, Progress
from .hosting import HostedModel, build_remote_model, check_hosted, hosted_models

__all__ = [
    "DEFAULT_TIMEOUT",
    "HostedModel",
    "NdifBackend",
    "Progress",
    "build_remote_model",
    "check_hosted",
    "hosted_models",
]
