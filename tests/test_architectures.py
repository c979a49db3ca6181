"""The architecture registry, checked against real (tiny, random) HF models.

Two layers of checks per family:

1. the independent reference (``tests/reference.py``) reproduces the model's own logits
   from the last decoder layer's output, which validates the reference itself;
2. the registry's adapter, applied part by part (final norm -> pre-unembed modules ->
   unembedding -> soft-cap), reproduces them too, and its paths name the same modules.
"""

from __future__ import annotations

import functools
import itertools
import types

import pytest
import reference as ref
import torch
from tiny_models import (
    MULTI_TOKEN_WORD,
    SINGLE_TOKEN_WORDS,
    TINY_MODEL_TYPES,
    tiny_config,
    tiny_model,
    tiny_tokenizer,
)
from torch import nn

from logitlens import architectures
from logitlens.architectures import (
    Architecture,
    context_length,
    get_architecture,
    register,
    resolve,
    supported_model_types,
)
from logitlens.errors import LogitLensError, UnsupportedArchitectureError

PROMPTS = [
    "Why do electricians make good swimmers? Because they know the current",
    "The capital of France is Paris",
]
# OPT variants built with do_layer_norm_before=False: model.decoder.final_layer_norm is None
POST_LN = {"opt-post_ln", "opt-350m-like"}
# OPT variants with word_embed_proj_dim != hidden_size: project_out is a Linear
PROJECT_OUT = {"opt-project_out", "opt-350m-like"}
SOFTCAPPED = {"gemma2", "gemma3_text"}
# In transformers 5 these decoder layers still return (hidden_states, ...) tuples.
TUPLE_LAYERS = {"falcon", "bloom"}

ATOL = RTOL = 1e-5


@functools.cache
def _built(model_type: str):
    """One model per type per test session (tests must not modify it)."""
    model, tokenizer = tiny_model(model_type)
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**batch, use_cache=False, output_hidden_states=True)
    hidden = ref.residuals(model, batch.input_ids, batch.attention_mask)
    return model, batch, out, hidden


def _apply_adapter(model: nn.Module, arch: Architecture, hidden: torch.Tensor) -> torch.Tensor:
    """Logits from a residual using only what the adapter names."""
    with torch.no_grad():
        norm = resolve(model, arch.final_norm)
        if norm is not None:
            hidden = norm(hidden)
        for path in arch.pre_unembed:
            module = resolve(model, path)
            if module is not None:
                hidden = module(hidden)
        logits = resolve(model, arch.unembed)(hidden)
        if arch.logit_softcap is not None:
            cap = getattr(model.config, arch.logit_softcap, None)
            if cap is not None:
                logits = torch.tanh(logits / cap) * cap
    return logits


# ----------------------------------------------------------------- the tiny fixtures


def test_registry_types_all_have_a_tiny_model():
    tiny_types = {tiny_config(t).model_type for t in TINY_MODEL_TYPES}
    assert set(supported_model_types()) <= tiny_types
    assert set(ref.LAYER_PATHS) == tiny_types


def test_tiny_tokenizer_promises():
    tok = tiny_tokenizer()
    assert 300 <= len(tok) <= 600
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    for word in SINGLE_TOKEN_WORDS:
        assert len(tok.encode(word, add_special_tokens=False)) == 1, word
    pieces = tok.encode(MULTI_TOKEN_WORD, add_special_tokens=False)
    assert len(pieces) > 1
    assert tok.decode(pieces) == MULTI_TOKEN_WORD
    ids = tok(PROMPTS[1]).input_ids
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == PROMPTS[1]


def test_tiny_model_is_deterministic_in_seed():
    a, _ = tiny_model("llama", seed=3)
    b, _ = tiny_model("llama", seed=3)
    c, _ = tiny_model("llama", seed=4)
    for (name, pa), pb, pc in zip(
        a.named_parameters(), b.parameters(), c.parameters(), strict=True
    ):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_tiny_model_is_small_and_not_trivial(model_type):
    model, _, out, hidden = _built(model_type)
    logits = out.logits
    config = model.config.get_text_config()
    assert not model.training
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert config.num_hidden_layers == len(hidden) == 2
    assert model.get_output_embeddings().weight.shape[0] == len(tiny_tokenizer())
    assert logits.shape[-1] == len(tiny_tokenizer())
    # every layer changes the residual stream substantially
    for before, after in itertools.pairwise(hidden):
        assert (after - before).norm() > 0.1 * before.norm()
    # predictions are far from uniform
    probs = logits.softmax(-1)
    assert probs.max(-1).values.min() > 3 / logits.shape[-1]


# ------------------------------------------------------------ the reference, vs HF


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_reference_logit_lens_on_last_layer_is_the_model_output(model_type):
    model, _, out, hidden = _built(model_type)
    logits = out.logits
    config = model.config.get_text_config()
    assert hidden.shape == (config.num_hidden_layers, *logits.shape[:2], config.hidden_size)
    torch.testing.assert_close(
        ref.logit_lens_logits(model, hidden[-1]), logits, atol=ATOL, rtol=RTOL
    )
    raw = ref.raw_lens_logits(model, hidden[-1])
    if model_type in POST_LN:  # no final norm: both lenses coincide
        torch.testing.assert_close(raw, logits, atol=ATOL, rtol=RTOL)
    else:  # the final norm matters, so skipping it would be caught
        assert (raw - logits).abs().max() > 0.1


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_reference_residuals_agree_with_hf_hidden_states(model_type):
    model, batch, out, hidden = _built(model_type)
    states = out.hidden_states  # embeddings, then each layer; HF norms the last one
    assert len(states) == len(hidden) + 1
    embed = ref.embed_residual(model, batch.input_ids, batch.attention_mask)
    torch.testing.assert_close(embed, states[0])
    for layer in range(len(hidden) - 1):
        torch.testing.assert_close(hidden[layer], states[layer + 1])


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_decoder_layer_output_type(model_type):
    model, batch, _, _ = _built(model_type)
    kinds = set(ref.layer_output_types(model, batch.input_ids, batch.attention_mask))
    expected = tuple if model_type in TUPLE_LAYERS else torch.Tensor
    assert kinds == {expected}, (
        f"{model_type} decoder layers now return {kinds}; update TUPLE_LAYERS and the "
        "notes in tests/reference.py"
    )


# ------------------------------------------------------------------- the adapters


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_adapter_paths_resolve_to_the_right_modules(model_type):
    model, *_ = _built(model_type)
    arch = get_architecture(model.config)
    assert model.config.model_type in arch.model_types
    assert get_architecture(model.config.model_type) is arch

    layers = resolve(model, arch.layers)
    assert isinstance(layers, nn.ModuleList)
    assert len(layers) == model.config.get_text_config().num_hidden_layers
    assert layers is ref.decoder_layers(model)

    norm = resolve(model, arch.final_norm)
    if model_type in POST_LN:
        assert norm is None
    else:
        assert isinstance(norm, nn.Module)
        assert norm is ref.final_norm(model)

    assert resolve(model, arch.unembed) is model.get_output_embeddings()

    pre_unembed = [resolve(model, path) for path in arch.pre_unembed]
    present = [module for module in pre_unembed if module is not None]
    assert all(isinstance(module, nn.Module) for module in present)
    if model_type in PROJECT_OUT:
        assert present == [ref.project_out(model)]
        assert present[0] is not None
    else:
        assert present == []

    if model_type in SOFTCAPPED:
        assert arch.logit_softcap is not None
        assert getattr(model.config, arch.logit_softcap) == ref.softcap(model) == 3.0
    else:
        assert arch.logit_softcap is None


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_adapter_parts_reproduce_the_model_logits(model_type):
    model, _, out, hidden = _built(model_type)
    logits = out.logits
    arch = get_architecture(model.config)
    torch.testing.assert_close(
        _apply_adapter(model, arch, hidden[-1]), logits, atol=ATOL, rtol=RTOL
    )
    # and on an earlier layer the adapter agrees with the reference lens
    torch.testing.assert_close(
        _apply_adapter(model, arch, hidden[0]),
        ref.logit_lens_logits(model, hidden[0]),
        atol=ATOL,
        rtol=RTOL,
    )


def test_resolve_missing_path_is_none():
    model, *_ = _built("gpt2")
    assert resolve(model, None) is None
    assert resolve(model, "transformer.no_such_module") is None
    assert resolve(model, "transformer.h") is model.transformer.h


# --------------------------------------------------------------- registry behaviour


@pytest.mark.parametrize(
    "config_or_type",
    ["not_a_real_model", types.SimpleNamespace(model_type="not_a_real_model")],
)
def test_unsupported_type_names_the_fix(config_or_type):
    with pytest.raises(UnsupportedArchitectureError) as info:
        get_architecture(config_or_type)
    assert isinstance(info.value, LogitLensError)
    message = str(info.value)
    assert "not_a_real_model" in message
    for model_type in supported_model_types():
        assert model_type in message
    assert "register(" in message
    assert "Architecture(" in message


def test_register_adds_and_replaces(monkeypatch):
    original_gpt2 = get_architecture("gpt2")
    monkeypatch.setattr(architectures, "_REGISTRY", dict(architectures._REGISTRY))

    custom = Architecture(
        model_types=("my_custom_lm", "gpt2"),
        layers="transformer.h",
        final_norm="transformer.ln_f",
        unembed="lm_head",
    )
    assert register(custom) is custom
    assert get_architecture("my_custom_lm") is custom
    assert get_architecture(types.SimpleNamespace(model_type="my_custom_lm")) is custom
    assert get_architecture("gpt2") is custom
    assert "my_custom_lm" in supported_model_types()
    assert custom.name == "my_custom_lm"

    monkeypatch.undo()
    assert get_architecture("gpt2") is original_gpt2
    assert "my_custom_lm" not in supported_model_types()
    with pytest.raises(UnsupportedArchitectureError):
        get_architecture("my_custom_lm")


def test_context_length():
    gpt2 = tiny_config("gpt2", n_positions=200)
    assert context_length(gpt2, get_architecture(gpt2)) == 200
    llama = tiny_config("llama", max_position_embeddings=300)
    assert context_length(llama, get_architecture(llama)) == 300
    only_seq_length = types.SimpleNamespace(seq_length=77, max_position_embeddings=None)
    assert context_length(only_seq_length, get_architecture("llama")) == 77
    assert context_length(types.SimpleNamespace(), get_architecture("llama")) is None
