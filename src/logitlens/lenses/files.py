"""The lens file format: safetensors written atomically, with a model fingerprint.

Every lens with weights (tuned, Jacobian, imported) is one safetensors file whose header
metadata holds a JSON config; nothing is pickled. The config carries the fingerprint of
the model the lens belongs to (family, sizes and a hash of the unembedding and final
norm), and loading checks it against the model the lens is used with.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..architectures import resolve
from ..errors import InputError, LensFileError
from ..lens_registry import kind_named
from ..paths import check_output_path, directory_write_problem
from ..storage import refuse_foreign, write_atomic, write_error

if TYPE_CHECKING:
    from ..loading import LensModel

CONFIG_KEY = "logitlens"
"""The header metadata key of a lens file's JSON config."""
OUR_METADATA_KEYS = (CONFIG_KEY, "checkpoint", "jacobian_checkpoint")
"""Header metadata keys only the safetensors files logitlens writes carry: lens files,
tuned-lens training checkpoints and Jacobian-lens fit checkpoints."""
LENS_SUFFIX = ".safetensors"


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


def model_fingerprint(model: LensModel) -> dict[str, Any]:
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


def describe_fingerprint(fingerprint: dict[str, Any]) -> str:
    digest = fingerprint.get("weights_sha256")
    return (
        f"{fingerprint.get('name')!r} ({fingerprint.get('model_type')}, "
        f"{fingerprint.get('n_layers')} layers, d_model {fingerprint.get('d_model')}, "
        f"vocab {fingerprint.get('vocab_size')}"
        + (f", weights {digest[:12]}" if digest else "")
        + ")"
    )


def default_lens_path(model: LensModel, kind: str = "tuned") -> Path:
    """Where ``logitlens tuned train`` (``jlens fit``: ``kind="jacobian"``) puts a
    model's lens unless told otherwise (the lens's entry in the lens registry says)."""
    return kind_named(kind).cache_path(model)


def written_by_logitlens(path: str | Path) -> bool:
    """Is ``path`` a safetensors file that logitlens wrote (a lens or a checkpoint)?"""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
    except Exception:  # not safetensors at all, or damaged: not ours to replace
        return False
    return any(key in metadata for key in OUR_METADATA_KEYS)


def check_lens_output(path: str | Path, *, force: bool = False, checkpoint: bool = False) -> Path:
    """Refuse, before any work, a lens path logitlens must not write.

    A name not ending in ``.safetensors`` (checkpoints excepted), a directory, FIFO or
    device, an unwritable directory (a missing one is created when the lens is saved),
    or an existing file logitlens did not write (another model's ``model.safetensors``,
    someone's notes) unless ``force``.
    """
    path = Path(path).expanduser()
    if not checkpoint and path.suffix.lower() != LENS_SUFFIX:
        raise InputError(f"Write the lens as a .safetensors file, not {path.name!r}.")
    if not path.parent.is_dir():
        existing = next(p for p in path.parents if p.exists())
        problem = directory_write_problem(existing)
        if problem is not None:
            raise write_error(path, problem)
        return path
    check_output_path(path, None)
    what = "training checkpoint" if checkpoint else "lens file"
    refuse_foreign(path, written_by_logitlens, what, force=force)
    return path


def write_safetensors(
    path: str | Path,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    *,
    force: bool = False,
) -> Path:
    """Write a safetensors file through a temporary sibling and an atomic rename.

    An existing file that logitlens did not write is never replaced unless ``force``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    _check_finite(tensors, f"Refusing to save {str(path)!r}")
    refuse_foreign(path, written_by_logitlens, "lens file", force=force)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(path, error) from None

    def save(temporary: Path) -> None:
        try:
            save_file(tensors, str(temporary), metadata=metadata)
        except SafetensorError as error:  # its I/O errors are not OSErrors: make them one
            code = re.search(r"os error (\d+)", str(error))
            if code is None:
                raise
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1)))) from None

    return write_atomic(path, save)


def _check_finite(tensors: dict[str, torch.Tensor], context: str) -> None:
    """Raise if a floating tensor holds NaN or infinity (a diverged or damaged lens)."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise LensFileError(
                f"{context}: tensor {name!r} holds NaN or infinite values (training "
                "diverged or the file is damaged). Retrain with a lower --lr."
            )


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
    except IsADirectoryError:
        raise LensFileError(
            f"{str(path)!r} is a directory: give the lens file inside it."
        ) from None
    except Exception as error:
        raise LensFileError(
            f"{path} is not a readable safetensors {what} file: it is corrupt, truncated "
            f"or of another format ({type(error).__name__}: {error}). Re-create it with "
            "`logitlens tuned train`."
        ) from None
    _check_finite(tensors, f"{path} is unusable")
    return tensors, metadata
