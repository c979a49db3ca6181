"""The Jacobian lens: each layer read through the model's average input-output Jacobian.

Layer ``l``'s residual ``h`` is read as ``unembed(final_norm(J_l h))``, where
``J_l = E[d h_final / d h_l]`` is averaged over a text corpus (fitted by
:func:`logitlens.training.jacobian.fit_jacobian_lens`). That is the tuned lens's
translator with ``A_l = J_l - I`` and no bias, so :class:`JacobianLens` *is* a
:class:`TunedLens` with the bias held at zero: it shares the translation code, the
safetensors file format and the model fingerprint. The file's config says
``"kind": "jacobian"``, and loading refuses a tuned-lens file as a Jacobian lens (and
the other way round) with a message saying which lens the file holds.

Layers the fit did not cover (those at or after its target layer) keep ``J = I``,
where the lens is the logit lens; ``info["fitted_layers"]`` lists the others.

Example:
    >>> lens = JacobianLens.load("smollm2.jlens.safetensors")
    >>> analyze(model, "Why do electricians ...", lens=lens, targets=" current")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import LensFileError
from .tuned import TunedLens


class JacobianLens(TunedLens):
    """Per-layer linear maps ``h -> J_l h`` (stored as ``A_l = J_l - I``), then the logit lens.

    Attributes:
        weight: ``[n_layers + 1, d, d]`` holding ``J_l - I``; slot 0 is ``EMBED``.
        bias: ``[n_layers + 1, d]``, always zero.
    """

    name = "jacobian"
    make_command = "logitlens jlens fit"

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        fingerprint: dict[str, Any],
        info: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        if bias.count_nonzero():
            raise LensFileError(
                f"A Jacobian lens has no bias, but this one{f' ({path})' if path else ''} "
                "has a non-zero bias: it is a tuned lens. Load it with --lens tuned."
            )
        super().__init__(weight, bias, fingerprint, info, path)

    @classmethod
    def from_jacobians(
        cls,
        jacobians: torch.Tensor | Mapping[int, torch.Tensor],
        fingerprint: dict[str, Any],
        info: dict[str, Any] | None = None,
    ) -> JacobianLens:
        """A lens from ``J`` matrices: ``[n_layers + 1, d, d]`` (slot 0 = ``EMBED``), or a
        mapping ``layer -> [d, d]`` (``EMBED`` = -1; missing layers get ``J = I``).
        """
        slots, d_model = fingerprint["n_layers"] + 1, fingerprint["d_model"]
        identity = torch.eye(d_model, dtype=torch.float32)
        if isinstance(jacobians, torch.Tensor):
            if tuple(jacobians.shape) != (slots, d_model, d_model):
                raise LensFileError(
                    f"Jacobians of shape {tuple(jacobians.shape)} do not fit a model of "
                    f"{slots - 1} layers and width {d_model}: expected "
                    f"[{slots}, {d_model}, {d_model}]."
                )
            weight = jacobians.float() - identity
        else:
            weight = torch.zeros(slots, d_model, d_model)
            for layer, matrix in jacobians.items():
                if not -1 <= layer < slots - 1 or tuple(matrix.shape) != (d_model, d_model):
                    raise LensFileError(
                        f"Jacobian for layer {layer} of shape {tuple(matrix.shape)} does not "
                        f"fit a model of {slots - 1} layers and width {d_model}."
                    )
                weight[layer + 1] = matrix.float() - identity
        return cls(weight, torch.zeros(slots, d_model), fingerprint, info)

    @property
    def jacobians(self) -> torch.Tensor:
        """``J`` per slot ``[n_layers + 1, d, d]`` (slot 0 = ``EMBED``)."""
        return self.weight + torch.eye(self.weight.shape[-1], dtype=self.weight.dtype)

    @property
    def n_prompts(self) -> int:
        """How many prompts the Jacobians are averaged over (0 if unknown)."""
        return int(self.info.get("n_prompts", 0))
