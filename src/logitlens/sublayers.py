"""Reading inside a layer: which families have a residual between attention and MLP.

Sequential blocks (Llama, Gemma, GPT-2, ...) add attention, then the MLP: the stream
between them, ``resid_mid``, can be read with the logit and raw lenses
(``analyze(..., site="mid")``). Parallel blocks (Phi, GPT-NeoX with
``use_parallel_residual``, Falcon with ``parallel_attn`` or its new decoder) feed both
the same input and add both at once: they have no ``resid_mid``, and logitlens says so
rather than inventing one. The tuned and Jacobian lenses are trained on layer outputs,
so they are refused at ``resid_mid``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .architectures import Sublayers, resolve
from .errors import InputError, UnsupportedArchitectureError

if TYPE_CHECKING:
    from .loading import LensModel

SITES = ("post", "mid")
"""Where a layer is read: its output (``post``) or between attention and MLP (``mid``)."""

MID_LENSES = ("logit", "raw")
"""Lenses defined at ``resid_mid``: those that need nothing trained on layer outputs."""


def sublayers_of(model: LensModel) -> Sublayers:
    """The model's :class:`Sublayers` entry, refused where parts do not add up.

    Raises:
        UnsupportedArchitectureError: the family has no entry, or this checkpoint's
            residual stream is not a sum of parts (a norm after the residual add).
    """
    architecture = model.architecture
    sublayers = architecture.sublayers
    if sublayers is None:
        raise UnsupportedArchitectureError(
            f"Model type {architecture.name!r} has no sub-layer entry, so attention and MLP "
            "cannot be read apart. Add one: register(Architecture(..., sublayers=Sublayers("
            "attention_out=..., mlp_out=..., heads_in=..., resid_mid=...))), then check it "
            "with `logitlens doctor --model MODEL`."
        )
    for name, value in sublayers.not_additive_when:
        if resolve(model.config, name) == value:
            raise UnsupportedArchitectureError(
                f"This {architecture.name} checkpoint has {name}={value!r}: a norm is applied "
                "after each residual add, so the residual stream is not a sum of sub-layer "
                "parts: neither direct logit attribution nor resid_mid is defined for it. "
                "Use a lens on layer outputs instead (logitlens run)."
            )
    return sublayers


def is_parallel(model: LensModel) -> bool:
    """Whether the model's attention and MLP read the same input (no ``resid_mid``)."""
    sublayers = sublayers_of(model)
    return sublayers.resid_mid is None or any(
        resolve(model.config, name) == value for name, value in sublayers.parallel_when
    )


def resid_mid_path(model: LensModel, site: str, lens_name: str) -> str | None:
    """The path (from a layer) whose input is ``resid_mid``; ``None`` for ``site="post"``.

    Raises:
        InputError: an unknown site, or a lens not defined at ``resid_mid``.
        UnsupportedArchitectureError: a parallel block, which has no ``resid_mid``.
    """
    if site not in SITES:
        raise InputError(f"Unknown site {site!r}: choose 'post' (layer output) or 'mid'.")
    if site == "post":
        return None
    if lens_name not in MID_LENSES:
        raise InputError(
            f"The {lens_name} lens was trained on layer outputs, not on the residual between "
            "attention and MLP: use lens='logit' or 'raw' with site='mid'."
        )
    if is_parallel(model):
        raise UnsupportedArchitectureError(
            f"This {model.architecture.name} model runs attention and MLP in parallel on the "
            "same input, so it has no residual between them: use site='post'."
        )
    return sublayers_of(model).resid_mid
