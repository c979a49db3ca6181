"""Lenses: ways to read a layer's residual stream as next-token logits.

- :mod:`.base`: the :class:`Lens` interface, the model's :class:`Unembedding`, and the
  logit and raw lenses, which need nothing but the model;
- :mod:`.tuned`: the tuned lens, a learned translator per layer;
- :mod:`.jacobian`: the Jacobian lens, the tuned lens's translator fixed to ``J_l - I``;
- :mod:`.files`: the lens file format (safetensors with a model fingerprint);
- :mod:`.imports`: pretrained lenses from tuned-lens and jacobian-lens files, no pickles run.

``LENSES`` names the lenses that need no file; ``LENS_FILES`` the lenses loaded from one.
"""

from __future__ import annotations

from ..errors import InputError, LensFileError
from .base import EMBED, Lens, LogitLens, RawLens, Unembedding
from .jacobian import JacobianLens
from .tuned import TunedLens, lens_kind, read_lens_file

LENSES: dict[str, type[Lens]] = {"logit": LogitLens, "raw": RawLens}
"""Lenses that need nothing but the model, by name."""

LENS_FILES: dict[str, type[TunedLens]] = {"tuned": TunedLens, "jacobian": JacobianLens}
"""Lenses with weights, by name (the ``kind`` in their file's config)."""


def get_lens(lens: str | Lens, path: str | None = None, *, tuned_path: str | None = None) -> Lens:
    """A lens object from a name and, for a lens with weights, its file; or a lens itself.

    ``get_lens("logit")``, ``get_lens("jacobian", "j.safetensors")``; ``tuned_path`` is
    the older name of ``path``. A file of the wrong kind is refused, naming its kind.
    """
    if isinstance(lens, Lens):
        return lens
    path = path if path is not None else tuned_path
    if lens in LENS_FILES:
        if path is None:
            kind = LENS_FILES[lens]
            raise InputError(
                f"The {lens} lens needs a trained lens file: pass its path (analyze: "
                f"tuned_path=...; CLI: --lens-path PATH); make one with `{kind.make_command}`."
            )
        return LENS_FILES[lens].load(path)
    try:
        return LENSES[lens]()
    except (KeyError, TypeError):
        known = ", ".join([*LENSES, *LENS_FILES])
        raise InputError(f"Unknown lens {lens!r}. Choose one of: {known}.") from None


def load_lens(path: str) -> TunedLens:
    """Whatever lens a logitlens lens file holds (tuned or Jacobian), by its ``kind``."""
    config, _, _ = read_lens_file(path)
    kind = lens_kind(config)
    if kind not in LENS_FILES:
        raise LensFileError(
            f"{path} holds a lens of kind {kind!r}, which this version of logitlens does "
            f"not know (known: {', '.join(LENS_FILES)}). Upgrade logitlens."
        )
    return LENS_FILES[kind].load(path)


__all__ = [
    "EMBED",
    "LENSES",
    "LENS_FILES",
    "JacobianLens",
    "Lens",
    "LogitLens",
    "RawLens",
    "TunedLens",
    "Unembedding",
    "get_lens",
    "load_lens",
]
