"""Code that runs inside the trace must be shippable to NDIF by value.

logitlens is not installed on NDIF's servers: ``nnsight.register(logitlens)`` ships
the functions the trace calls, with their module globals. An import executed at call
time (``from .x import y`` inside a function) would look for logitlens on the server
and fail there, while every local test, ``remote="local"`` included, still passes.
This test keeps such imports out of the trace path.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

import numpy as np
import pytest
import torch

import logitlens
from logitlens import analysis, architectures, lenses, metrics, tuned

TRACE_PATH = [
    analysis.lens_reductions,
    analysis.chunk_plan,
    architectures.resolve,
    lenses.Unembedding,
    lenses.LogitLens,
    lenses.RawLens,
    metrics.entropy,
    metrics.kl_divergence,
    metrics.token_rank,
    metrics._count_above,
    tuned.TunedLens.translate,
    tuned.TunedLens.project,
]


@pytest.mark.parametrize("code", TRACE_PATH, ids=lambda code: code.__qualname__)
def test_no_import_runs_inside_the_trace(code):
    tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not imports, f"{code.__qualname__} imports at call time: {ast.unparse(imports[0])}"


def test_the_check_catches_a_call_time_import():
    def shipped(x):
        from logitlens.metrics import entropy

        return entropy(x)

    tree = ast.parse(textwrap.dedent(inspect.getsource(shipped)))
    assert any(isinstance(node, ast.ImportFrom) for node in ast.walk(tree))


# --- Over a real socket: the loopback NDIF server (tests/ndif_server.py) -------------------

API_KEY = "llk-test-0b6f4e2d9a51-secret"
TINY = "test-org/tiny-llama"
BUNDLED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPTS = ["Why do electricians make good swimmers? Because they know the", "The river bank"]
ARRAYS = (
    "top_ids",
    "top_probs",
    "target_prob",
    "target_rank",
    "target_logit",
    "entropy",
    "kl",
    "final_rank",
    "model_top_ids",
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tiny_models import tiny_model

    directory = tmp_path_factory.mktemp("hub") / "tiny-llama"
    hf_model, tokenizer = tiny_model("llama")
    hf_model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def ndif(tiny_dir, tmp_path_factory):
    """The loopback server, hosting the tiny model and the bundled one, reached as NDIF + hub."""
    import huggingface_hub.constants as hub
    from ndif_server import launch
    from nnsight import CONFIG

    log = tmp_path_factory.mktemp("ndif") / "requests.jsonl"
    server = launch(
        {TINY: tiny_dir, BUNDLED_ID: logitlens.loading.bundled_model_dir()},
        api_key=API_KEY,
        log=log,
        idle_timeout=120,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hub, "ENDPOINT", server.url)
        template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
        patch.setattr(hub, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        patch.setattr(CONFIG.API, "HOST", server.url)
        patch.setattr(CONFIG.API, "APIKEY", API_KEY)
        patch.setenv("NDIF_API_KEY", API_KEY)
        yield server
    server.stop()


@pytest.fixture
def healthy(ndif):
    ndif.set_fault("none")
    yield ndif
    ndif.set_fault("none")


@pytest.fixture(scope="module")
def remote_tiny(ndif):
    return logitlens.load_model(TINY, remote=True, timeout=30)


@pytest.fixture(scope="module")
def local_tiny(tiny_dir):
    return logitlens.load_model(str(tiny_dir))


def _assert_equal_results(remote_result, local_result, tolerance=1e-6):
    compared = 0
    for name in ARRAYS:
        remote_values, local_values = getattr(remote_result, name), getattr(local_result, name)
        assert (remote_values is None) == (local_values is None), name
        if remote_values is not None:
            np.testing.assert_allclose(
                remote_values, local_values, rtol=0, atol=tolerance, err_msg=name
            )
            compared += 1
    assert compared >= 2
    assert remote_result.tokens == local_result.tokens


def _random_tuned_lens(model, path):
    from logitlens.tuned import TunedLens

    lens = TunedLens.identity(model)
    generator = torch.Generator().manual_seed(0)
    lens.weight.copy_(torch.randn(lens.weight.shape, generator=generator) * 0.05)
    lens.bias.copy_(torch.randn(lens.bias.shape, generator=generator) * 0.05)
    return lens.save(path)


def test_a_hub_model_loads_for_ndif_with_the_installed_transformers(healthy, remote_tiny):
    """nnsight 0.8.1 finds no tokenizer for a hub id with transformers >= 5.23 by itself."""
    import transformers

    assert remote_tiny.tokenizer is not None, transformers.__version__
    assert remote_tiny.tokenizer("hello")["input_ids"]
    assert remote_tiny.info().device == "NDIF"
    assert remote_tiny.module.lm_head.weight.device.type == "meta"


FULL = {"metrics": ["topk", "target", "entropy", "kl", "final_rank"], "targets": " current"}


@pytest.mark.parametrize(
    "options",
    [
        {"positions": "last"},
        {"positions": "all", **FULL},
        {"positions": "all", "lens": "raw", "include_embed": True, **FULL},
        {"positions": "0,-1", "layers": "0,-1", "batch_size": 1, **FULL},
    ],
    ids=["track-last", "all-positions", "raw-embed", "batches"],
)
def test_remote_analysis_equals_local(healthy, remote_tiny, local_tiny, options):
    remote_result = logitlens.analyze(remote_tiny, PROMPTS, **options)
    local_result = logitlens.analyze(local_tiny, PROMPTS, **options)
    _assert_equal_results(remote_result, local_result)


def test_remote_tuned_lens_equals_local(healthy, remote_tiny, local_tiny, tmp_path):
    path = _random_tuned_lens(local_tiny, tmp_path / "tuned.safetensors")
    options = {"lens": "tuned", "tuned_path": str(path), "positions": "all", **FULL}
    remote_result = logitlens.analyze(remote_tiny, PROMPTS, include_embed=True, **options)
    local_result = logitlens.analyze(local_tiny, PROMPTS, include_embed=True, **options)
    _assert_equal_results(remote_result, local_result)
