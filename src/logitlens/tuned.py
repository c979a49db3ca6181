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

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .architectures import resolve
from .errors import LensFileError
from .lenses import Lens, Unembedding

FORMAT = "logitlens-tuned-lens"
FORMAT_VERSION = 1
CONFIG_KEY = "logitlens"
"""Header metadata key holding the lens's JSON config."""


def _weight_digest(tensors: Sequence[torch.Tensor]) -> str:
    """sha256 of tensors rounded to bfloat16, so fp32 and bf16 copies of a model agree."""
    digest = hashlib.sha256()
    for tensor in tensors:
        rounded = tensor.detach().to("cpu", torch.bfloat16).contiguous()
        digest.update(str(tuple(rounded.shape)).encode())
        digest.update(rounded.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def _cached_digest(module: torch.nn.Module, tensors: list[torch.Tensor]) -> str:
    """The weight digest, kept on the module until a tensor changes (0.3 s on 135M).

    The cache lives on the model, not in this module: module-level state would travel
    with every remote request, since NDIF requests carry logitlens's code by value.
    """
    state = tuple(k for t in tensors for k in (t.data_ptr(), t._version, t.dtype.itemsize))
    cached = getattr(module, "_logitlens_weight_digest", None)
    if cached is None or cached[0] != state:
        cached = (state, _weight_digest(tensors))
        module._logitlens_weight_digest = cached
    return cached[1]


def model_fingerprint(model: Any) -> dict[str, Any]:
    """What identifies the model a lens was trained for.

    ``weights_sha256`` is ``None`` for a remote model, whose weights are not here;
    the sizes are then the only check.
    """
    module, architecture = model.module, model.architecture
    parts = [resolve(module, architecture.unembed)]
    final_norm = resolve(module, architecture.final_norm)
    if final_norm is not None:
        parts.extend(p for p in final_norm.parameters(recurse=False))
    weights = [p.weight if isinstance(p, torch.nn.Module) else p for p in parts]
    remote = any(w.device.type == "meta" for w in weights)
    return {
        "name": model.name,
        "model_type": model.config.model_type,
        "n_layers": model.n_layers,
        "d_model": int(model.config.get_text_config().hidden_size),
        "vocab_size": model.vocab_size,
        "weights_sha256": None if remote else _cached_digest(module, weights),
    }


def _describe(fingerprint: dict[str, Any]) -> str:
    digest = fingerprint.get("weights_sha256")
    return (
        f"{fingerprint.get('name')!r} ({fingerprint.get('model_type')}, "
        f"{fingerprint.get('n_layers')} layers, d_model {fingerprint.get('d_model')}, "
        f"vocab {fingerprint.get('vocab_size')}"
        + (f", weights {digest[:12]}" if digest else "")
        + ")"
    )


def default_lens_path(model: Any) -> Path:
    """Where ``logitlens tuned train`` puts a model's lens unless told otherwise."""
    from .loading import cache_dir

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.name)
    return cache_dir() / "lenses" / f"{safe}.safetensors"


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
    def identity(cls, model: Any, dtype: torch.dtype = torch.float32) -> TunedLens:
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

    def check_model(self, model: Any) -> None:
        """Refuse a model other than the one this lens was trained for, naming both."""
        theirs = model_fingerprint(model)
        keys = ["model_type", "n_layers", "d_model", "vocab_size"]
        if self.fingerprint.get("weights_sha256") and theirs["weights_sha256"]:
            keys.append("weights_sha256")
        if any(self.fingerprint.get(key) != theirs[key] for key in keys):
            source = f" ({self.path})" if self.path else ""
            raise LensFileError(
                f"This tuned lens{source} was trained for {_describe(self.fingerprint)}, "
                f"not for {_describe(theirs)}. Train one for this model with "
                "`logitlens tuned train --model ...`."
            )

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "model": self.fingerprint.get("name")}

    def config(self) -> dict[str, Any]:
        """The JSON config saved in the file header."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "n_layers": self.n_layers,
            "d_model": self.bias.shape[1],
            "dtype": str(self.weight.dtype).removeprefix("torch."),
            "model": self.fingerprint,
            "training": self.info,
        }

    def save(self, path: str | Path) -> Path:
        """Write the lens to ``path`` (safetensors); atomic, so never half-written."""
        tensors = {
            "weight": self.weight.detach().cpu().contiguous(),
            "bias": self.bias.detach().cpu().contiguous(),
        }
        return write_safetensors(path, tensors, {CONFIG_KEY: json.dumps(self.config())})

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> TunedLens:
        """Read a lens written by :meth:`save`.

        Raises:
            LensFileError: missing, not safetensors, corrupt, truncated, or not a lens.
        """
        tensors, metadata = read_safetensors(path, "tuned-lens")
        try:
            config = json.loads(metadata[CONFIG_KEY])
            if config.get("format") != FORMAT:
                raise ValueError
            weight, bias = tensors["weight"], tensors["bias"]
            fingerprint = dict(config["model"])
        except (KeyError, ValueError, TypeError, AttributeError):
            raise LensFileError(
                f"{path} is a safetensors file but not a logitlens tuned lens (no "
                f"{FORMAT!r} config with weight and bias). Train one with "
                "`logitlens tuned train`."
            ) from None
        expected = (config.get("n_layers", -1) + 1, config.get("d_model", -1))
        if tuple(bias.shape) != expected:
            raise LensFileError(
                f"{path} is inconsistent: its config says {expected[0] - 1} layers of "
                f"width {expected[1]} but the bias has shape {tuple(bias.shape)}."
            )
        return cls(
            weight.to(device),
            bias.to(device),
            fingerprint,
            info=config.get("training"),
            path=str(path),
        )


def write_safetensors(
    path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]
) -> Path:
    """Write a safetensors file through a temporary sibling and an atomic rename."""
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def read_safetensors(path: str | Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the header metadata of a safetensors file, or a clear error."""
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise LensFileError(
            f"No {what} file at {str(path)!r}. Check the path, or train a lens with "
            "`logitlens tuned train` (the bundled model's: scripts/train_bundled_lens.py)."
        )
    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
            tensors = {key: reader.get_tensor(key) for key in reader.keys()}  # noqa: SIM118
    except Exception as error:
        raise LensFileError(
            f"{path} is not a readable safetensors {what} file: it is corrupt, truncated "
            f"or of another format ({type(error).__name__}: {error}). Re-create it with "
            "`logitlens tuned train`."
        ) from None
    return tensors, metadata
