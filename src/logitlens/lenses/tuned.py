"""The tuned lens (Belrose et al. 2023): a learned affine translator per layer.

Layer ``l``'s residual ``h`` is read as ``unembed(final_norm(h + A_l h + b_l))``. All
translators start at zero (``A_l = 0, b_l = 0``), so an untrained tuned lens *is* the
logit lens, bit for bit; the last decoder layer's translator stays zero, since the
model's own output is what the lens is trained to match. The embedding output
(``EMBED``) has a translator too.

A lens is saved as one safetensors file: the stacked ``weight`` ``[n_layers + 1, d, d]``
and ``bias`` ``[n_layers + 1, d]`` tensors (slot 0 is ``EMBED``, slot ``l + 1`` is layer
``l``), with a small JSON config in the file's header metadata. Nothing is pickled. The
config holds a fingerprint of the model (family, sizes, and a hash of the unembedding
and final-norm weights), and loading checks it against the model the lens is used on.

Example:
    >>> lens = TunedLens.load(default_lens_path(model))
    >>> analyze(model, "Why do electricians ...", lens=lens, targets=" current")
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..errors import LensFileError
from .base import Lens, Unembedding
from .files import (
    CONFIG_KEY,
    check_lens_output,
    describe_fingerprint,
    model_fingerprint,
    read_safetensors,
    write_safetensors,
)

if TYPE_CHECKING:
    from ..loading import LensModel

FORMAT = "logitlens-tuned-lens"
"""The file format of every lens made of per-layer translators (tuned, Jacobian, imported);
the config's ``kind`` says which lens a file holds (files without one are tuned lenses)."""
FORMAT_VERSION = 1
"""Header metadata key holding the lens's JSON config."""


class TunedLens(Lens):
    """Per-layer affine translators ``h -> h + A_l h + b_l``, then the logit lens.

    Attributes:
        weight: ``[n_layers + 1, d, d]``, slot 0 for ``EMBED``, slot ``l + 1`` for layer l.
        bias: ``[n_layers + 1, d]``.
        fingerprint: from :func:`model_fingerprint`, checked by :meth:`check_model`.
        info: free-form facts about training (corpus, tokens, seed), saved with the lens.
    """

    name = "tuned"
    carries_weights = True
    make_command: ClassVar[str] = "logitlens tuned train"
    """How to make a file of this lens, for error messages."""

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        fingerprint: dict[str, Any],
        info: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        slots, d_model = bias.shape
        if weight.shape != (slots, d_model, d_model):
            raise LensFileError(
                f"Tuned-lens weight has shape {tuple(weight.shape)} but bias has "
                f"{tuple(bias.shape)}; expected weight [{slots}, {d_model}, {d_model}]."
            )
        self.weight = weight
        self.bias = bias
        self.fingerprint = fingerprint
        self.info = dict(info or {})
        self.path = path

    @classmethod
    def identity(cls, model: LensModel, dtype: torch.dtype = torch.float32) -> TunedLens:
        """An untrained lens for ``model``: every translator zero (equals the logit lens)."""
        fingerprint = model_fingerprint(model)
        slots, d_model = fingerprint["n_layers"] + 1, fingerprint["d_model"]
        device = next(model.module.parameters()).device
        device = torch.device("cpu") if device.type == "meta" else device
        return cls(
            torch.zeros(slots, d_model, d_model, dtype=dtype, device=device),
            torch.zeros(slots, d_model, dtype=dtype, device=device),
            fingerprint,
        )

    @property
    def n_layers(self) -> int:
        return self.bias.shape[0] - 1

    def parameters(self) -> list[torch.Tensor]:
        """The trainable tensors, for an optimizer."""
        return [self.weight, self.bias]

    def translate(self, hidden: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
        """``h + A_l h + b_l`` for ``hidden`` ``[layers, rows, d]`` from ``layers``."""
        slots = torch.tensor([layer + 1 for layer in layers], device=self.weight.device)
        # Index first, then move: only the translators in use travel to the device.
        weight = self.weight[slots].to(device=hidden.device, dtype=hidden.dtype)
        bias = self.bias[slots].to(device=hidden.device, dtype=hidden.dtype)
        return hidden + torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))

    def project(
        self, unembedding: Unembedding, hidden: torch.Tensor, layers: Sequence[int]
    ) -> torch.Tensor:
        return unembedding.logits(unembedding.norm(self.translate(hidden, layers)))

    def check_model(self, model: LensModel) -> None:
        """Refuse a model other than the one this lens was trained for, naming both."""
        theirs = model_fingerprint(model)
        keys = ["model_type", "n_layers", "d_model", "vocab_size"]
        if self.fingerprint.get("weights_sha256") and theirs["weights_sha256"]:
            keys.append("weights_sha256")
        if any(self.fingerprint.get(key) != theirs[key] for key in keys):
            source = f" ({self.path})" if self.path else ""
            ours = describe_fingerprint(self.fingerprint)
            raise LensFileError(
                f"This {self.name} lens{source} was trained for {ours}, "
                f"not for {describe_fingerprint(theirs)}. Make one for this model with "
                f"`{self.make_command} --model ...`."
            )

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "model": self.fingerprint.get("name")}

    def config(self) -> dict[str, Any]:
        """The JSON config saved in the file header."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": self.name,
            "n_layers": self.n_layers,
            "d_model": self.bias.shape[1],
            "dtype": str(self.weight.dtype).removeprefix("torch."),
            "model": self.fingerprint,
            "training": self.info,
        }

    def save(self, path: str | Path, *, force: bool = False) -> Path:
        """Write the lens to ``path`` (``.safetensors``); atomic, so never half-written.

        An existing file that logitlens did not write is never replaced unless ``force``.
        """
        path = check_lens_output(path, force=force)
        tensors = {
            "weight": self.weight.detach().cpu().contiguous(),
            "bias": self.bias.detach().cpu().contiguous(),
        }
        metadata = {CONFIG_KEY: json.dumps(self.config())}
        return write_safetensors(path, tensors, metadata, force=force)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TunedLens:
        """Read a lens written by :meth:`save`.

        Raises:
            LensFileError: missing, not safetensors, corrupt, truncated, not a lens,
                or a lens of another kind (a tuned file loaded as a Jacobian lens).
        """
        config, weight, bias = read_lens_file(path, f"{cls.name}-lens")
        kind = lens_kind(config)
        if kind != cls.name:
            raise LensFileError(
                f"{path} holds a {kind} lens, not a {cls.name} lens. Load it as one "
                f"(CLI: --lens {kind} --lens-path {path}), or make a {cls.name} lens with "
                f"`{cls.make_command}`."
            )
        fingerprint = dict(config["model"])
        return cls(
            weight.to(device),
            bias.to(device),
            fingerprint,
            info=config.get("training"),
            path=str(path),
        )


def lens_kind(config: dict[str, Any]) -> str:
    """Which lens a file's config describes (files from before ``kind`` are tuned)."""
    return str(config.get("kind", "tuned"))


def lens_kinds() -> list[str]:
    """The kinds a lens file may hold: the registry's lenses that are read from a file."""
    from ..lens_registry import file_lenses

    return [entry.name for entry in file_lenses()]


CONFIG_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "kind": (str, "a lens kind"),
    "n_layers": (int, "a number of layers"),
    "d_model": (int, "a width"),
    "model": (dict, "the model's fingerprint (an object)"),
    "training": ((dict, type(None)), "an object"),
}
"""Config fields a lens file's reader relies on: type and what the value means."""


def read_lens_file(
    path: str | Path, what: str = "lens"
) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """The config, weight and bias of a translator-lens file, checked for consistency.

    Raises:
        LensFileError: missing, not safetensors, corrupt, not a lens, a config field of
            the wrong type, a kind logitlens does not know, or inconsistent shapes.
    """
    tensors, metadata = read_safetensors(path, what)
    try:
        config = json.loads(metadata[CONFIG_KEY])
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise ValueError
        weight, bias = tensors["weight"], tensors["bias"]
    except (KeyError, ValueError, TypeError, AttributeError):
        raise LensFileError(
            f"{path} is a safetensors file but not a logitlens tuned lens (no "
            f"{FORMAT!r} config with weight and bias). Train one with "
            "`logitlens tuned train`, fit a Jacobian lens with `logitlens jlens fit`, "
            "or convert one with `logitlens lens import`."
        ) from None
    for name, (types, meaning) in CONFIG_FIELDS.items():
        value = config.get(name)
        if (name in config or name in ("n_layers", "d_model", "model")) and (
            isinstance(value, bool) or not isinstance(value, types)
        ):
            raise LensFileError(
                f"{path} is damaged: its config field {name!r} is {value!r:.60}, not "
                f"{meaning}. Re-create the lens (`logitlens tuned train`, `logitlens jlens "
                "fit` or `logitlens lens import`)."
            )
    kind = lens_kind(config)
    if kind not in lens_kinds():
        raise LensFileError(
            f"{path} holds a lens of kind {kind!r:.40}, which logitlens does not know "
            f"(known: {', '.join(lens_kinds())}): the file is damaged or from a newer "
            "logitlens. Re-create the lens, or upgrade logitlens."
        )
    expected = (config["n_layers"] + 1, config["d_model"])
    if tuple(bias.shape) != expected or not (
        weight.is_floating_point() and bias.is_floating_point()
    ):
        raise LensFileError(
            f"{path} is inconsistent: its config says {expected[0] - 1} layers of "
            f"width {expected[1]} but the bias has shape {tuple(bias.shape)} "
            f"({bias.dtype}); it is damaged. Re-create the lens."
        )
    return config, weight, bias
