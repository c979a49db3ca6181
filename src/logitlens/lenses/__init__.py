"""Lenses: ways to read a layer's residual stream as next-token logits.

- :mod:`.base`: the :class:`Lens` interface, the model's :class:`Unembedding`, and the
  logit and raw lenses, which need nothing but the model;
- :mod:`.tuned`: the tuned lens, a learned translator per layer;
- :mod:`.jacobian`: the Jacobian lens, the tuned lens's translator fixed to ``J_l - I``;
- :mod:`.files`: the lens file format (safetensors with a model fingerprint);
- :mod:`.imports`: pretrained lenses from tuned-lens and jacobian-lens files, no pickles run.

``LENSES`` (from :mod:`logitlens.lens_registry`) holds one entry per kind of lens.
"""

from __future__ import annotations

from ..lens_registry import LENSES, LensKind, file_lenses, parse_lens_spec, register_lens
from .base import EMBED, Lens, LogitLens, RawLens, Unembedding
from .jacobian import JacobianLens
from .tuned import TunedLens, lens_kind, read_lens_file


def get_lens(lens: str | Lens, path: str | None = None, *, tuned_path: str | None = None) -> Lens:
    """A lens object from a name (or ``"NAME:key=value,..."``) and, for a lens with
    weights, its file; or a lens itself.

    ``get_lens("logit")``, ``get_lens("jacobian", "j.safetensors")``; ``tuned_path`` is
    the older name of ``path``. A file of the wrong kind is refused, naming its kind.
    """
    if isinstance(lens, Lens):
        return lens
    kind, values = parse_lens_spec(lens)
    return kind.build(path if path is not None else tuned_path, values)


def load_lens(path: str) -> TunedLens:
    """Whatever lens a logitlens lens file holds (tuned or Jacobian), by its ``kind``."""
    config, _, _ = read_lens_file(path)  # refuses a kind the registry does not know
    known = {entry.name: entry for entry in file_lenses()}
    return known[lens_kind(config)].build(path)  # type: ignore[return-value]


__all__ = [
    "EMBED",
    "LENSES",
    "JacobianLens",
    "Lens",
    "LensKind",
    "LogitLens",
    "RawLens",
    "TunedLens",
    "Unembedding",
    "get_lens",
    "load_lens",
    "register_lens",
]
