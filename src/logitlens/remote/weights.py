"""A hosted model's unembedding (final norm + head), here, without downloading the model.

Lenses that carry weights (the tuned lens: ``[n_layers + 1, d, d]`` translators) are
not sent to NDIF with every batch. The remote trace saves only the residuals of the
requested positions, and the lens, the final norm and the unembedding run here, on
a local copy of just those tensors. They are read by tensor name from the hub's
safetensors files: the index (``model.safetensors.index.json``) names the shard
holding each tensor, each shard's header gives its byte range, and one HTTP range
request per tensor fetches it. The copy is cached under
``cache_dir()/remote-unembeddings`` and reused.

Cost, once per model: the head (``vocab x d``; Llama 3.1 70B: 128256 x 8192 bf16 =
2.1 GB) and the final norm (``d``). Per request: the residuals, never the lens.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch

from ..architectures import Architecture, resolve
from ..errors import ModelLoadError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def unembedding_root(name: str, config: Any, architecture: Architecture) -> torch.nn.Module:
    """A CPU module tree of the hosted model ``name`` whose final norm and head hold the
    real weights; every other module stays on the meta device.

    ``Unembedding(root, architecture, config)`` then runs here exactly as it runs on NDIF.
    """
    if name in _ROOTS:
        return _ROOTS[name]
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # the architecture only: costs no memory
        root = AutoModelForCausalLM.from_config(config)
    parts = [
        resolve(root, architecture.final_norm),
        resolve(root, architecture.unembed),
    ]
    parts += [resolve(root, path) for path in architecture.pre_unembed]
    modules = [module for module in parts if module is not None]
    wanted = _tensor_names(root, modules)
    tensors = cached_tensors(name, sorted({n for names in wanted.values() for n in names}))
    for module in modules:
        module.to_empty(device="cpu")
    for (module, attribute), names in wanted.items():
        found = next((tensors[n] for n in names if n in tensors), None)
        if found is None:
            raise ModelLoadError(
                f"The hub files of {name!r} have none of {names}: cannot apply the "
                "lens here. Use the logit or raw lens, which run entirely on NDIF."
            )
        getattr(module, attribute).data = found.to(getattr(module, attribute).dtype)
    root.float().eval().requires_grad_(False)  # residuals arrive upcast to fp32
    _ROOTS[name] = root
    return root


_ROOTS: dict[str, torch.nn.Module] = {}


def _tensor_names(root: torch.nn.Module, modules: list[torch.nn.Module]) -> dict:
    """(module, parameter name) -> the checkpoint names it may be stored under (tied too)."""
    names_of: dict[int, list[str]] = {}
    for name, parameter in root.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(parameter), []).append(name)
    wanted = {}
    for module in modules:
        for attribute, parameter in module.named_parameters(recurse=False):
            wanted[(module, attribute)] = names_of[id(parameter)]
    return wanted


def cache_path(repo_id: str) -> Path:
    from ..paths import cache_dir

    return cache_dir() / "remote-unembeddings" / f"{repo_id.replace('/', '--')}.safetensors"


def cached_tensors(repo_id: str, names: list[str]) -> dict[str, torch.Tensor]:
    """The tensors among ``names`` that the hub files of ``repo_id`` hold, cached locally.

    A cache file that cannot be read (torn by a crash of an older version, a bad disk)
    is fetched again and replaced.
    """
    from safetensors.torch import load_file, save_file

    path = cache_path(repo_id)
    if path.is_file():
        try:
            return load_file(path)
        except Exception:  # any damage: the hub still has the tensors
            pass
    tensors = fetch_tensors(repo_id, names)
    from ..storage import write_atomic, write_error

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise write_error(path, error) from None
    contiguous = {k: v.contiguous() for k, v in tensors.items()}
    write_atomic(path, lambda temporary: save_file(contiguous, str(temporary)))
    return tensors


def fetch_tensors(repo_id: str, names: list[str]) -> dict[str, torch.Tensor]:
    """Read tensors by name from a hub repo's safetensors files with HTTP range requests."""
    import httpx
    from huggingface_hub import hf_hub_download, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    try:
        index = json.loads(Path(hf_hub_download(repo_id, INDEX)).read_text())["weight_map"]
    except Exception:  # one unsharded file
        index = dict.fromkeys(names, SINGLE)
    shards: dict[str, list[str]] = {}
    for name in names:
        if name in index:
            shards.setdefault(index[name], []).append(name)
    headers = build_hf_headers()
    tensors: dict[str, torch.Tensor] = {}
    try:
        with httpx.Client(headers=headers, follow_redirects=True, timeout=60.0) as client:
            for shard, shard_names in shards.items():
                url = hf_hub_url(repo_id, shard)
                size = struct.unpack("<Q", _range(client, url, 0, 8))[0]
                header = json.loads(_range(client, url, 8, size))
                for name in shard_names:
                    if name not in header:
                        continue
                    info = header[name]
                    start, stop = info["data_offsets"]
                    data = _range(client, url, 8 + size + start, stop - start)
                    tensors[name] = _decode(name, info, data)
    except httpx.HTTPError as error:
        raise ModelLoadError(
            f"Could not read the unembedding of {repo_id!r} from the hub ({error}); the tuned "
            "lens needs it here once (it is cached). Check the network or HF_TOKEN."
        ) from None
    return tensors


def _range(client: Any, url: str, start: int, length: int) -> bytes:
    answer = client.get(url, headers={"Range": f"bytes={start}-{start + length - 1}"})
    answer.raise_for_status()
    return answer.content[:length]


def _decode(name: str, info: dict, data: bytes) -> torch.Tensor:
    """One tensor from its raw bytes, through safetensors itself (every dtype it knows)."""
    from safetensors.torch import load

    header = json.dumps(
        {name: {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [0, len(data)]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    return load(struct.pack("<Q", len(header)) + header + data)[name]
