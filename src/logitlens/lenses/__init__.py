"""Lenses: ways to read a layer's residual stream as next-token logits.

- :mod:`.base`: the :class:`Lens` interface, the model's :class:`Unembedding`, and the
  logit and raw lenses, which need nothing but the model;
- :mod:`.tuned`: the tuned lens, a learned translator per layer;
- :mod:`.files`: the lens file format (safetensors with a model fingerprint).

``LENSES`` names the lenses that need no file; a lens with weights is loaded from one.
"""

from __future__ import annotations

from ..errors import InputError
from .base import EMBED, Lens, LogitLens, RawLens, Unembedding
from .tuned import TunedLens

LENSES: dict[str, type[Lens]] = {"logit": LogitLens, "raw": RawLens}
"""Lenses that need nothing but the model, by name. The tuned lens is loaded from a file."""


def get_lens(lens: str | Lens, tuned_path: str | None = None) -> Lens:
    """A lens object from a name (``"logit"``, ``"raw"``, ``"tuned"``) or a lens itself."""
    if isinstance(lens, Lens):
        return lens
    if lens == "tuned":
        if tuned_path is None:
            raise InputError(
                "The tuned lens needs a trained lens file: pass tuned_path=... "
                "(CLI: --tuned-path PATH); train one with `logitlens tuned train`."
            )
        return TunedLens.load(tuned_path)
    try:
        return LENSES[lens]()
    except (KeyError, TypeError):
        known = ", ".join([*LENSES, "tuned"])
        raise InputError(f"Unknown lens {lens!r}. Choose one of: {known}.") from None


__all__ = [
    "EMBED",
    "LENSES",
    "Lens",
    "LogitLens",
    "RawLens",
    "TunedLens",
    "Unembedding",
    "get_lens",
]
