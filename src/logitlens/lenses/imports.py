"""Pretrained lenses from the public hubs, converted to logitlens files without running pickles.

Two formats are read:

- a **tuned-lens folder** (AlignmentResearch/tuned-lens: ``config.json`` and a pickled
  ``params.pt``, the state dict of ``layer_translators``, keys ``"{i}.weight"`` and
  ``"{i}.bias"``). Translator ``i`` reads ``hidden_states[i]`` of a transformers
  forward: ``i = 0`` is the embedding output and ``i`` the output of decoder layer
  ``i - 1``, which is logitlens's slot ``i`` (``EMBED`` first). There are
  ``num_hidden_layers`` translators; the last layer keeps none (zero here). The
  formula is the same as logitlens's tuned lens: ``unembed(norm(h + W h + b))``.
- a **Jacobian-lens file** (neuronpedia/jacobian-lens, the reference code's
  ``JacobianLens.save``: a pickled dict whose key ``"J"`` maps a decoder layer ``l`` to
  ``J_l`` ``[d, d]``, read as ``unembed(norm(J_l h))`` on layer ``l``'s output, which is
  logitlens's layer ``l``). Layers it has no ``J`` for keep ``J = I``.

Pickles are opened with ``torch.load(weights_only=True)``, whose unpickler admits
tensors and plain containers only: a file that names any other global (a class, a
function such as ``os.system``) is refused with :class:`LensFileError` before anything
in it runs. Sizes are checked against the model, and so is the unembedding hash a
tuned-lens config records. The result is a :class:`TunedLens` or
:class:`JacobianLens` with the model's fingerprint, saved as safetensors.

Example:
    >>> lens = import_lens("downloads/gpt2-lens", model)   # folder, .pt, or hub id
    >>> lens.save("gpt2.tuned.safetensors")
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..architectures import resolve
from ..errors import LensFileError
from ..paths import read_text_file
from .files import describe_fingerprint, model_fingerprint
from .jacobian import JacobianLens
from .tuned import TunedLens

if TYPE_CHECKING:
    from ..loading import LensModel

TUNED_LENS_HUB = "AlignmentResearch/tuned-lens"
"""Hugging Face *space* with pretrained tuned lenses under ``lens/<model>/``."""
JACOBIAN_LENS_HUB = "neuronpedia/jacobian-lens"
"""Hugging Face repository with fitted Jacobian lenses (``.pt`` files)."""
HUB_PREFIXES = {"tuned-lens:": "tuned", "jacobian-lens:": "jacobian"}


def safe_torch_load(path: Path) -> Any:
    """Unpickle ``path`` admitting only tensors and plain containers; never runs code.

    A file that names a global (a class, a function such as ``os.system``) is refused as
    code; one that is truncated, empty or not a PyTorch file at all is called damaged.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        named = [line for line in lines if "GLOBAL" in line or "global" in line.split()[:3]]
        if named:
            raise LensFileError(
                f"{path} is not a plain file of tensors: it would need to run code or build "
                f"objects to load ({named[0][:160]}). logitlens never runs pickled code; get "
                "the lens from a trusted source, or convert it where you trust it to plain "
                "tensors (torch.save of a dict of tensors)."
            ) from None
        boilerplate = ("Weights only load failed", "Please file", "Check the documentation")
        reason = next((line for line in lines if not line.startswith(boilerplate)), "")
        raise LensFileError(
            f"{path} is damaged or not a PyTorch file: truncated, empty or another format "
            f"({type(error).__name__}: {reason[:120] or 'no data'}). Download it again."
        ) from None


def unembedding_hash(model: LensModel) -> str:
    """The tuned-lens project's hash of the unembedding matrix (its ``unembed_hash``)."""
    weight = resolve(model.module, model.architecture.unembed).weight
    array = weight.detach().float().cpu().numpy()
    return hashlib.sha256(str.encode(np.array_str(array, precision=1))).hexdigest()


def _fetch_from_hub(source: str) -> Path:
    """Download a hub lens (``tuned-lens:<model id>`` or ``jacobian-lens:<file.pt>``)."""
    from huggingface_hub import hf_hub_download

    prefix = next(p for p in HUB_PREFIXES if source.startswith(p))
    name = source[len(prefix) :]
    if HUB_PREFIXES[prefix] == "tuned":
        files = [
            hf_hub_download(TUNED_LENS_HUB, f"lens/{name}/{file}", repo_type="space")
            for file in ("config.json", "params.pt")
        ]
        return Path(files[0]).parent
    return Path(hf_hub_download(JACOBIAN_LENS_HUB, name))


def import_lens(source: str | Path, model: LensModel, *, check_hash: bool = True) -> TunedLens:
    """A logitlens lens from a tuned-lens folder, a Jacobian-lens ``.pt`` or a hub id.

    Args:
        source: a folder with ``config.json`` + ``params.pt``; a ``.pt`` file with key
            ``"J"``; ``tuned-lens:<model id>`` (e.g. ``tuned-lens:gpt2``) or
            ``jacobian-lens:<path in the repo>`` to download (needs the network).
        model: the model the lens is for (local weights, for the hash check).
        check_hash: refuse a tuned lens whose recorded unembedding hash differs.

    Raises:
        LensFileError: a pickle that is not plain tensors, an unknown layout, or a lens
            for another model (both named).
    """
    text = str(source)
    path = _fetch_from_hub(text) if text.startswith(tuple(HUB_PREFIXES)) else Path(text)
    path = path.expanduser()
    if path.is_dir():
        return _import_tuned_lens(path, model, check_hash)
    if path.is_file():
        return _import_jacobian_lens(path, model)
    raise LensFileError(
        f"No lens at {text!r}. Give a tuned-lens folder (config.json + params.pt), a "
        "Jacobian-lens .pt file, or a hub id: tuned-lens:<model> or jacobian-lens:<file>."
    )


TUNED_LENS_CONFIG: dict[str, type] = {
    "d_model": int,
    "num_hidden_layers": int,
    "lens_type": str,
    "base_model_name_or_path": str,
    "unembed_hash": str,
    "bias": bool,
}
"""The tuned-lens config fields read here, and their types (all but the sizes optional)."""


def _import_tuned_lens(folder: Path, model: LensModel, check_hash: bool) -> TunedLens:
    config_file, params_file = folder / "config.json", folder / "params.pt"
    if not config_file.is_file() or not params_file.is_file():
        raise LensFileError(
            f"{folder} is not a tuned-lens folder: it needs config.json and params.pt."
        )
    text = read_text_file(config_file, LensFileError)
    try:
        config = json.loads(text)
        d_model, n_translators = config["d_model"], config["num_hidden_layers"]
    except (ValueError, KeyError, TypeError):
        raise LensFileError(
            f"{config_file} is not a tuned-lens config (needs d_model, num_hidden_layers)."
        ) from None
    for name, types in TUNED_LENS_CONFIG.items():
        value = config.get(name)
        required = name in ("d_model", "num_hidden_layers")
        if (required or value is not None) and (
            isinstance(value, bool) is not (types is bool) or not isinstance(value, types)
        ):
            raise LensFileError(
                f"{config_file} is damaged: its config field {name!r} is {value!r:.60}, not "
                f"{'an integer' if types is int else 'text' if types is str else 'true/false'}."
            )
    lens_type = config.get("lens_type", "linear_tuned_lens")
    if lens_type != "linear_tuned_lens":
        raise LensFileError(
            f"{folder} holds a {lens_type!r} lens; only linear_tuned_lens can be imported."
        )
    fingerprint = model_fingerprint(model)
    theirs = config.get("base_model_name_or_path", "an unnamed model")
    if (n_translators, d_model) != (fingerprint["n_layers"], fingerprint["d_model"]):
        raise LensFileError(
            f"{folder} is a tuned lens for {theirs!r} ({n_translators} layers, d_model "
            f"{d_model}), not for {describe_fingerprint(fingerprint)}."
        )
    recorded = config.get("unembed_hash")
    if check_hash and recorded and recorded != unembedding_hash(model):
        raise LensFileError(
            f"{folder} is a tuned lens for {theirs!r}, whose unembedding differs from that "
            f"of {describe_fingerprint(fingerprint)} (unembed_hash {recorded[:12]} vs "
            f"{unembedding_hash(model)[:12]}). Import the lens for this model, or pass "
            "--no-hash-check if you know they share the unembedding."
        )
    state = safe_torch_load(params_file)
    if not isinstance(state, dict):
        raise LensFileError(f"{params_file} is not a state dict of tensors.")
    state = {str(key).removeprefix("layer_translators."): value for key, value in state.items()}
    slots = fingerprint["n_layers"] + 1
    weight, bias = torch.zeros(slots, d_model, d_model), torch.zeros(slots, d_model)
    expected = {f"{i}.weight" for i in range(n_translators)}
    if config.get("bias", True):
        expected |= {f"{i}.bias" for i in range(n_translators)}
    if set(state) != expected:
        unexpected = sorted(set(state) - expected)[:4]
        missing = sorted(expected - set(state))[:4]
        raise LensFileError(
            f"{params_file} does not hold {n_translators} translators as its config says "
            f"(missing {missing}, unexpected {unexpected})."
        )
    for key, value in state.items():
        index, _, kind = key.partition(".")
        shape = (d_model, d_model) if kind == "weight" else (d_model,)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value)
            raise LensFileError(f"{params_file}: {key} is {found}, expected a tensor {shape}.")
        (weight if kind == "weight" else bias)[int(index)] = value.float()
    info = {"imported_from": str(folder), "format": "tuned-lens", "base_model": theirs}
    return TunedLens(weight, bias, fingerprint, info=info)


def _import_jacobian_lens(path: Path, model: LensModel) -> JacobianLens:
    saved = safe_torch_load(path)
    if not isinstance(saved, dict) or not isinstance(saved.get("J"), dict):
        keys = sorted(map(str, saved)) if isinstance(saved, dict) else type(saved).__name__
        raise LensFileError(
            f"{path} is not a Jacobian-lens file (no key 'J' mapping layers to matrices; "
            f"found {keys})."
        )
    if not saved["J"]:
        raise LensFileError(
            f"{path} holds no Jacobians ('J' is empty): importing it would give the logit "
            "lens under another name. Get the fitted file again, or fit one with "
            "`logitlens jlens fit`."
        )
    fingerprint = model_fingerprint(model)
    n_layers, d_model = fingerprint["n_layers"], fingerprint["d_model"]
    jacobians: dict[int, torch.Tensor] = {}
    for layer, matrix in saved["J"].items():
        if not isinstance(layer, int) or not isinstance(matrix, torch.Tensor):
            raise LensFileError(f"{path}: 'J' must map layer numbers to tensors.")
        if not 0 <= layer < n_layers or tuple(matrix.shape) != (d_model, d_model):
            layers = sorted(k for k in saved["J"] if isinstance(k, int))
            shape = tuple(matrix.shape)
            raise LensFileError(
                f"{path} is a Jacobian lens for a model with J of shape {shape} on layers "
                f"{layers[0]}..{layers[-1]}, not for {describe_fingerprint(fingerprint)}."
            )
        jacobians[layer] = matrix.float()
    n_prompts = saved.get("n_prompts", 0) or 0
    if isinstance(n_prompts, torch.Tensor) and n_prompts.numel() == 1:
        n_prompts = n_prompts.item()
    if isinstance(n_prompts, bool) or not isinstance(n_prompts, int) or n_prompts < 0:
        raise LensFileError(
            f"{path} is damaged: its 'n_prompts' is {n_prompts!r:.40}, not a count of prompts."
        )
    info = {
        "imported_from": str(path),
        "format": "jacobian-lens",
        "n_prompts": n_prompts,
        "fitted_layers": sorted(jacobians),
    }
    return JacobianLens.from_jacobians(jacobians, fingerprint, info=info)
