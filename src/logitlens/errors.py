"""The exceptions logitlens raises: each names the problem and the fix."""

from __future__ import annotations


class LogitLensError(Exception):
    """Base class for every error logitlens raises on purpose."""


class InputError(LogitLensError, ValueError):
    """A prompt, layer, position, target or option the user gave is not usable."""


class ModelLoadError(LogitLensError):
    """A model could not be found, converted or loaded."""


class UnsupportedArchitectureError(LogitLensError):
    """The model's ``config.model_type`` has no entry in the architecture registry."""


class LensFileError(LogitLensError):
    """A saved lens file is missing, corrupt, or belongs to another model."""


class RemoteError(LogitLensError):
    """A remote run on NDIF failed: key, network, service, or the job itself."""


class OutputError(LogitLensError, OSError):
    """A file cannot be written: missing or read-only directory, full disk, not ours."""
