"""Lenses: ways to read a layer's residual stream as next-token logits.

Every lens maps hidden states of shape ``[layers, rows, d_model]`` (several layers at
once, so the unembedding is one batched matmul) to logits ``[layers, rows, vocab]``.
The model's own parts come from an :class:`Unembedding`, which works on a plain
PyTorch module or on an nnsight envoy, so the same lens runs locally and on NDIF.

Adding a lens is one subclass of :class:`Lens` (a dataclass when it has parameters)
plus one :class:`~logitlens.lens_registry.LensKind` entry (see :mod:`logitlens.lens_registry`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..architectures import Architecture, resolve

if TYPE_CHECKING:
    from ..loading import LensModel

EMBED = -1
"""Layer index used for the embedding output (the residual stream entering layer 0)."""


class Unembedding:
    """The final norm, any extra projection, the unembedding and soft-cap of one model.

    ``root`` is the ``*ForCausalLM`` module or its nnsight envoy; module calls go
    through it, so inside a remote trace they run on the server's weights.
    """

    def __init__(self, root: Any, architecture: Architecture, config: Any) -> None:
        self.final_norm = resolve(root, architecture.final_norm)
        pre = (resolve(root, path) for path in architecture.pre_unembed)
        self.pre_unembed = [module for module in pre if module is not None]
        self.unembed = resolve(root, architecture.unembed)
        field = architecture.logit_softcap
        self.softcap: float | None = getattr(config, field, None) if field else None

    def norm(self, hidden: torch.Tensor) -> torch.Tensor:
        """Apply the final norm (identity where the model has none)."""
        return hidden if self.final_norm is None else self.final_norm(hidden)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Project normed hidden states ``[..., d]`` to logits ``[..., vocab]``."""
        for module in self.pre_unembed:
            hidden = module(hidden)
        return self.cap(self.unembed(hidden))

    def cap(self, logits: torch.Tensor) -> torch.Tensor:
        """The final logit soft-cap (Gemma 2/3: ``cap * tanh(logits / cap)``), if any."""
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def model_logprobs(self, last_layer: torch.Tensor) -> torch.Tensor:
        """The model's own next-token log-probabilities (fp32) from its last layer's output.

        The reference every lens is compared with (KL, final rank) and trained towards;
        never differentiated through.
        """
        with torch.no_grad():
            return self.logits(self.norm(last_layer)).float().log_softmax(-1)


class Lens(ABC):
    """Reads residual streams ``[layers, rows, d]`` as logits ``[layers, rows, vocab]``."""

    name: ClassVar[str]
    carries_weights: ClassVar[bool] = False
    """True for a lens with its own tensors: on NDIF it then runs here, on saved residuals."""

    @abstractmethod
    def project(
        self, unembedding: Unembedding, hidden: torch.Tensor, layers: Sequence[int]
    ) -> torch.Tensor:
        """Logits for ``hidden[i]``, taken from layer ``layers[i]`` (``EMBED`` = -1)."""

    def parameters(self) -> list[torch.Tensor]:
        """The lens's own tensors (none for lenses that are only the model's parts)."""
        return []

    def content_hash(self) -> str | None:
        """sha256 of the lens's own tensors, bit for bit; ``None`` for a lens without any.

        Result files record it, so a resumed run with a retrained lens is refused.
        """
        tensors = self.parameters()
        if not tensors:
            return None
        digest = hashlib.sha256()
        for tensor in tensors:
            data = tensor.detach().to("cpu").contiguous()
            digest.update(f"{tuple(data.shape)} {data.dtype}".encode())
            digest.update(data.view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    def settings(self) -> dict[str, Any]:
        """The lens's parameters by name: the fields of a dataclass lens, else none."""
        if not dataclasses.is_dataclass(self):
            return {}
        fields = dataclasses.fields(self)
        return {field.name: getattr(self, field.name) for field in fields if field.init}

    def identify(self) -> dict[str, Any]:
        """The lens's identity: what numbers computed with it depend on. Its kind
        (``name``), the hash of its weights (``sha256``) and its ``parameters``.

        Result files record it, so a resumed run with another lens, retrained weights or
        another parameter is refused. ``parameters`` is left out for a lens without any,
        so files written before lenses had parameters still resume. (Not ``identity``:
        ``TunedLens.identity(model)`` builds the untrained lens.)
        """
        return {"name": self.name, "sha256": self.content_hash(), **self._parameters_json()}

    def _parameters_json(self) -> dict[str, Any]:
        """``{"parameters": ...}`` as JSON gives them back (so a saved identity compares
        equal to a fresh one); empty for a lens without parameters."""
        settings = self.settings()
        if not settings:
            return {}
        return {"parameters": json.loads(json.dumps(settings, sort_keys=True, default=str))}

    def check_model(self, model: LensModel) -> None:  # noqa: B027 - optional hook
        """Raise if this lens cannot be used with ``model`` (default: any model)."""

    def to_json(self) -> dict[str, Any]:
        """A small description of the lens for result files (with its parameters, if any)."""
        return {"name": self.name, **self._parameters_json()}


class LogitLens(Lens):
    """The logit lens (nostalgebraist 2020): final norm, then the unembedding."""

    name = "logit"

    def project(
        self, unembedding: Unembedding, hidden: torch.Tensor, layers: Sequence[int]
    ) -> torch.Tensor:
        return unembedding.logits(unembedding.norm(hidden))


class RawLens(Lens):
    """The unembedding applied to the raw residual stream, without the final norm."""

    name = "raw"

    def project(
        self, unembedding: Unembedding, hidden: torch.Tensor, layers: Sequence[int]
    ) -> torch.Tensor:
        return unembedding.logits(hidden)
