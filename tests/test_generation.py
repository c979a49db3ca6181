"""The lens over generated text, checked against a plain-PyTorch greedy loop with hooks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import reference
import torch
from typer.testing import CliRunner

import logitlens
from logitlens.cli import app, runners
from logitlens.errors import InputError
from logitlens.generation import GenerationResult, generate_lens
from logitlens.lenses import EMBED

PROMPT = "The capital of France is"
FAMILIES = ["llama", "gemma3_text", "gpt2"]


def _eos_ids(module) -> set[int]:
    eos = module.generation_config.eos_token_id
    return set() if eos is None else {eos} if isinstance(eos, int) else set(eos)


@torch.no_grad()
def _reference_generation(module, prompt_ids: list[int], max_new_tokens: int, k: int):
    """Greedy decoding without a KV cache; each step's lens top-k from hooked residuals.

    Returns generated ids and ``[step, layer, k]`` top ids and probabilities.
    """
    ids = list(prompt_ids)
    generated, top_ids, top_probs = [], [], []
    for _ in range(max_new_tokens):
        input_ids = torch.tensor([ids])
        hidden = reference.residuals(module, input_ids)[:, 0, -1]  # [layer, d]
        probs = reference.logit_lens_logits(module, hidden).double().softmax(-1)
        values, indices = probs.topk(k, dim=-1)
        top_ids.append(indices)
        top_probs.append(values)
        token = int(module(input_ids, use_cache=False).logits[0, -1].argmax())
        generated.append(token)
        ids.append(token)
        if token in _eos_ids(module):
            break
    return generated, torch.stack(top_ids).numpy(), torch.stack(top_probs).numpy()


@pytest.mark.parametrize("model_type", FAMILIES)
def test_generation_equals_a_plain_greedy_loop_with_hooks(wrap_tiny, model_type):
    model = wrap_tiny(model_type)
    result = generate_lens(model, PROMPT, 6, k=4)
    prompt_ids = model.tokenizer(PROMPT)["input_ids"]
    generated, top_ids, top_probs = _reference_generation(model.module, prompt_ids, 6, 4)
    assert result.generated_ids == generated
    ours_ids = result.lens_result.top_ids[0].transpose(1, 0, 2)  # [step, layer, k]
    ours_probs = result.lens_result.top_probs[0].transpose(1, 0, 2)
    np.testing.assert_allclose(ours_probs, top_probs, rtol=1e-4, atol=1e-6)
    # ids may swap only where two probabilities tie
    same = ours_ids == top_ids
    assert same[..., 0].all() or np.allclose(ours_probs[~same], top_probs[~same], atol=1e-6)
    assert result.n_prompt_tokens == len(prompt_ids)
    assert result.lens_result.token_ids[0] == prompt_ids + generated[:-1]


@pytest.mark.parametrize("model_type", FAMILIES)
def test_last_layer_top1_is_the_generated_token_at_every_step(wrap_tiny, model_type):
    model = wrap_tiny(model_type, seed=1)
    result = generate_lens(model, PROMPT, 8, k=3)
    assert len(result.generated_ids) >= 1
    assert result.top1_ids[:, -1].tolist() == result.generated_ids
    assert result.lens_result.model_top_ids[0].tolist() == result.generated_ids
    assert (result.lens_result.final_rank[0, -1] == 1).all()
    assert all(s is not None and s <= model.n_layers - 1 for s in result.stable_top1)


def test_identity_tuned_lens_equals_the_logit_lens_and_raw_lens_matches_hooks(wrap_tiny):
    from logitlens.lenses import TunedLens

    model = wrap_tiny("llama")
    logit = generate_lens(model, PROMPT, 4, k=3)
    tuned = generate_lens(model, PROMPT, 4, k=3, lens=TunedLens.identity(model))
    np.testing.assert_array_equal(tuned.lens_result.top_ids, logit.lens_result.top_ids)
    np.testing.assert_allclose(tuned.lens_result.top_probs, logit.lens_result.top_probs, rtol=1e-5)
    raw = generate_lens(model, PROMPT, 4, k=3, lens="raw")
    assert raw.generated_ids == logit.generated_ids  # the lens never changes what is said
    ids = model.tokenizer(PROMPT)["input_ids"] + raw.generated_ids
    n_prompt = raw.n_prompt_tokens
    with torch.no_grad():
        hidden = reference.residuals(model.module, torch.tensor([ids]))[:, 0]  # [layer, seq, d]
        probs = reference.raw_lens_logits(model.module, hidden).double().softmax(-1)
    expected = probs[:, n_prompt - 1 : n_prompt - 1 + len(raw.generated_ids)].topk(3, dim=-1)
    np.testing.assert_allclose(raw.lens_result.top_probs[0], expected.values, rtol=1e-4)


def test_remote_local_round_trip_equals_local(wrap_tiny):
    local = generate_lens(wrap_tiny("llama"), PROMPT, 5, k=3)
    remote = generate_lens(wrap_tiny("llama", remote="local"), PROMPT, 5, k=3)
    assert remote.generated_ids == local.generated_ids
    for name in ("top_ids", "top_probs", "final_rank", "model_top_ids"):
        np.testing.assert_array_equal(
            getattr(remote.lens_result, name), getattr(local.lens_result, name)
        )


def test_generation_stops_at_end_of_text_with_steps_aligned(wrap_tiny):
    model = wrap_tiny("llama")
    full = generate_lens(model, PROMPT, 6, k=2)
    model.module.generation_config.eos_token_id = full.generated_ids[2]
    short = generate_lens(model, PROMPT, 6, k=2)
    stop = full.generated_ids.index(full.generated_ids[2]) + 1
    assert short.generated_ids == full.generated_ids[:stop]
    assert short.lens_result.top_ids.shape[2] == stop
    np.testing.assert_array_equal(short.lens_result.top_ids, full.lens_result.top_ids[:, :, :stop])


def test_layer_subset_and_embedding(wrap_tiny):
    model = wrap_tiny("llama")
    full = generate_lens(model, PROMPT, 3, k=2)
    part = generate_lens(model, PROMPT, 3, k=2, layers="embed,-1")
    assert part.layers == [EMBED, model.n_layers - 1]
    np.testing.assert_array_equal(part.lens_result.top_ids[:, 1], full.lens_result.top_ids[:, -1])
    assert part.normalised_depth()[0] in (0.0, 1.0)


def _fabricated(top1: list[list[int]], generated: list[int], layers: list[int]):
    """A GenerationResult whose lens top-1 per step and layer is ``top1``."""
    top_ids = np.array(top1).T[None, :, :, None]  # [1, layer, step, 1]
    n_steps = len(generated)
    lens_result = logitlens.LensResult(
        model_name="fake",
        lens="logit",
        prompts=["x"],
        tokens=[["x"] * n_steps],
        token_ids=[[0] * n_steps],
        layers=layers,
        positions=np.arange(n_steps)[None, :],
        k=1,
        top_ids=top_ids,
        top_probs=np.ones(top_ids.shape),
        vocab={i: str(i) for i in range(10)},
    )
    return GenerationResult(lens_result, "x", 1, generated, "", n_layers=max(layers) + 1)


def test_first_and_stable_top1_definitions():
    result = _fabricated(
        # layers:  0  1  2  3
        [[5, 7, 5, 5], [7, 7, 7, 7], [5, 5, 5, 3], [1, 2, 3, 4]],
        generated=[5, 7, 5, 9],
        layers=[0, 1, 2, 3],
    )
    assert result.first_top1 == [0, 0, 0, None]
    assert result.stable_top1 == [2, 0, None, None]
    assert result.normalised_depth("first") == [0.25, 0.25, 0.25, None]
    assert result.normalised_depth("stable") == [0.75, 0.25, None, None]
    with_embed = _fabricated([[1, 5, 5]], generated=[5], layers=[EMBED, 0, 1])
    assert with_embed.first_top1 == [0] and with_embed.normalised_depth() == [0.5]


def test_input_errors(wrap_tiny):
    model = wrap_tiny("llama")
    with pytest.raises(InputError, match="empty"):
        generate_lens(model, " ", 3)
    with pytest.raises(InputError, match="at least 1"):
        generate_lens(model, PROMPT, 0)
    with pytest.raises(InputError, match="context"):
        generate_lens(model, PROMPT, 10_000)
    with pytest.raises(InputError, match="k must be"):
        generate_lens(model, PROMPT, 2, k=0)


def test_generate_cli_json_and_plot(wrap_tiny, monkeypatch, tmp_path):
    model = wrap_tiny("llama")
    monkeypatch.setattr(runners, "open_model", lambda *a, **k: model)
    picture = tmp_path / "generation.png"
    result = CliRunner().invoke(
        app, ["generate", PROMPT, "-n", "4", "-k", "2", "--json", "--plot", str(picture)]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    expected = generate_lens(model, PROMPT, 4, k=2)
    assert [s["token_id"] for s in payload["steps"]] == expected.generated_ids
    assert [s["first_top1"] for s in payload["steps"]] == expected.first_top1
    last = str(model.n_layers - 1)
    assert all(s["top"][last][0][0] == s["token"] for s in payload["steps"])
    assert picture.stat().st_size > 1000
    table = CliRunner().invoke(app, ["generate", PROMPT, "-n", "2"])
    assert table.exit_code == 0 and "first top-1" in table.stdout


@pytest.mark.bundled
def test_bundled_generation_reads_its_own_tokens(bundled):
    result = generate_lens(bundled, "The capital of France is", 6, k=3)
    assert result.top1_ids[:, -1].tolist() == result.generated_ids
    ids = bundled.tokenizer("The capital of France is")["input_ids"]
    with torch.no_grad():
        expected = bundled.module.generate(
            torch.tensor([ids]), max_new_tokens=6, do_sample=False, pad_token_id=0
        )[0, len(ids) :]
    assert result.generated_ids == expected.tolist()
    assert " Paris" in result.text
    assert all(first is not None for first in result.first_top1)


@pytest.mark.bundled
def test_bundled_gemma_generation_equals_transformers_greedy(gemma):
    prompt = "The Eiffel Tower is in the city of"
    result = generate_lens(gemma, prompt, 5, k=3)
    assert result.top1_ids[:, -1].tolist() == result.generated_ids
    ids = gemma.tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        expected = gemma.module.generate(
            torch.tensor([ids]), max_new_tokens=5, do_sample=False, pad_token_id=0
        )[0, len(ids) :]
    assert result.generated_ids == expected.tolist()
    assert result.generated_tokens[0] == " Paris"
