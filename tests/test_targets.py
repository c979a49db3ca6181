"""Targets: strings and token ids, the multi-token policy, leading spaces."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from tiny_models import MULTI_TOKEN_WORD

import logitlens
from logitlens import InputError, MultiTokenTargetWarning
from logitlens.targets import resolve_target, resolve_targets

PROMPT = "Why do electricians make good swimmers? Because they know the"


def _pieces(model, text):
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    return ids, [model.tokenizer.decode([i]) for i in ids]


def _own_probs(model, prompt):
    import torch

    ids = model.tokenizer(prompt)["input_ids"]
    with torch.no_grad():
        return model.module(torch.tensor([ids])).logits[0, -1].softmax(-1)


def test_multi_token_target_warns_and_uses_the_first_token(shared_tiny):
    ids, pieces = _pieces(shared_tiny, MULTI_TOKEN_WORD)
    assert len(ids) > 1
    with pytest.warns(MultiTokenTargetWarning) as record:
        result = logitlens.analyze(shared_tiny, PROMPT, targets=MULTI_TOKEN_WORD)
    assert len(record) == 1
    message = str(record[0].message)
    assert repr(MULTI_TOKEN_WORD) in message
    assert f"{len(ids)} tokens" in message
    for piece in pieces:
        assert repr(piece) in message
    assert f"id {ids[0]}" in message
    assert result.target_ids == [[ids[0]]]
    assert result.target_tokens == [[pieces[0]]]
    # The statistics are those of the first token.
    probs = _own_probs(shared_tiny, PROMPT)
    assert result.target_prob[0, -1, 0, 0] == pytest.approx(probs[ids[0]].item(), rel=1e-4)


def test_single_token_target_does_not_warn(shared_tiny):
    with warnings.catch_warnings():
        warnings.simplefilter("error", MultiTokenTargetWarning)
        result = logitlens.analyze(shared_tiny, PROMPT, targets=" current")
    assert result.target_tokens == [[" current"]]


def test_multi_token_warning_points_at_the_callers_line(shared_tiny):
    with pytest.warns(MultiTokenTargetWarning) as record:
        logitlens.analyze(shared_tiny, PROMPT, targets=MULTI_TOKEN_WORD)
    assert record[0].filename == __file__, (
        f"the warning is attributed to {record[0].filename}:{record[0].lineno}, "
        "not to the code that called analyze()"
    )


def test_explicit_token_id(shared_tiny):
    token_id = shared_tiny.tokenizer.encode(" current", add_special_tokens=False)[0]
    by_id = logitlens.analyze(shared_tiny, PROMPT, targets=token_id, metrics=["target"])
    by_text = logitlens.analyze(shared_tiny, PROMPT, targets=" current", metrics=["target"])
    assert by_id.target_ids == [[token_id]]
    assert by_id.target_tokens == [[" current"]]
    np.testing.assert_array_equal(by_id.target_prob, by_text.target_prob)
    probs = _own_probs(shared_tiny, PROMPT)
    assert by_id.target_prob[0, -1, 0, 0] == pytest.approx(probs[token_id].item(), rel=1e-4)


def test_explicit_id_of_a_second_piece(shared_tiny):
    """Pass an id to pick a piece other than the first of a multi-token word."""
    ids, pieces = _pieces(shared_tiny, MULTI_TOKEN_WORD)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MultiTokenTargetWarning)
        result = logitlens.analyze(shared_tiny, PROMPT, targets=ids[1])
    assert result.target_ids == [[ids[1]]]
    assert result.target_tokens == [[pieces[1]]]


@pytest.mark.parametrize("offset", [0, 1, 1000])
def test_out_of_vocabulary_id(shared_tiny, offset):
    vocab = shared_tiny.vocab_size
    bad = vocab + offset
    with pytest.raises(InputError, match=rf"Target token id {bad} is outside the vocabulary"):
        logitlens.analyze(shared_tiny, PROMPT, targets=bad)


def test_negative_id(shared_tiny):
    with pytest.raises(InputError, match=r"-1 is outside the vocabulary \(0\.\.\d+\)"):
        logitlens.analyze(shared_tiny, PROMPT, targets=-1)


@pytest.mark.parametrize("bad", [True, 1.5, None, b"x"])
def test_target_of_the_wrong_type(shared_tiny, bad):
    with pytest.raises(InputError, match="must be a string or a token id"):
        logitlens.analyze(shared_tiny, PROMPT, targets=[[bad]])


def test_empty_target(shared_tiny):
    with pytest.raises(InputError, match="target is empty"):
        logitlens.analyze(shared_tiny, PROMPT, targets="")


def test_leading_space_matters_on_the_tiny_tokenizer(shared_tiny):
    spaced = logitlens.analyze(shared_tiny, PROMPT, targets=" current", metrics=["target"])
    bare = logitlens.analyze(shared_tiny, PROMPT, targets="current", metrics=["target"])
    assert spaced.target_ids != bare.target_ids
    assert spaced.target_tokens == [[" current"]]
    assert bare.target_tokens == [["current"]]


def test_target_shapes(shared_tiny):
    tok = shared_tiny.tokenizer

    def one(text):
        return tok.encode(text, add_special_tokens=False)[0]

    prompts = ["The capital of France is", PROMPT]
    shared = logitlens.analyze(shared_tiny, prompts, targets=" Paris")
    assert shared.target_ids == [[one(" Paris")]] * 2
    per_prompt = logitlens.analyze(shared_tiny, prompts, targets=[" Paris", " current"])
    assert per_prompt.target_ids == [[one(" Paris")], [one(" current")]]
    lists = logitlens.analyze(shared_tiny, prompts, targets=[[" Paris", 7], [" current", " the"]])
    assert lists.target_ids == [[one(" Paris"), 7], [one(" current"), one(" the")]]
    assert lists.target_prob.shape[-1] == 2
    # Each prompt's statistics are for its own targets.
    probs = _own_probs(shared_tiny, PROMPT)
    np.testing.assert_allclose(
        lists.target_prob[1, -1, 0],
        probs[[one(" current"), one(" the")]].numpy(),
        rtol=1e-4,
    )


def test_mismatched_number_of_targets(shared_tiny):
    with pytest.raises(InputError, match="Got 3 targets for 2 prompts"):
        logitlens.analyze(shared_tiny, ["a b", "c d"], targets=[" a", " b", " c"])
    with pytest.raises(InputError, match="same number"):
        logitlens.analyze(shared_tiny, ["a b", "c d"], targets=[[" a", " b"], [" c"]])
    with pytest.raises(InputError, match="at least one"):
        resolve_targets(shared_tiny.tokenizer, [[], []], 2, shared_tiny.vocab_size)


def test_resolve_target_directly(shared_tiny):
    resolved = resolve_target(shared_tiny.tokenizer, " Paris", shared_tiny.vocab_size)
    assert resolved.text == " Paris"
    assert resolved.token == " Paris"
    assert shared_tiny.tokenizer.decode([resolved.token_id]) == " Paris"
    assert resolve_targets(shared_tiny.tokenizer, None, 3, shared_tiny.vocab_size) == [[], [], []]


@pytest.mark.bundled
def test_leading_space_variants_on_the_bundled_tokenizer(bundled):
    tok = bundled.tokenizer
    spaced_ids = tok.encode(" current", add_special_tokens=False)
    bare_ids = tok.encode("current", add_special_tokens=False)
    assert len(spaced_ids) == 1 and len(bare_ids) == 1
    assert spaced_ids != bare_ids

    with warnings.catch_warnings():
        warnings.simplefilter("error", MultiTokenTargetWarning)
        result = logitlens.analyze(bundled, PROMPT, targets=[[" current", "current"]])
    assert result.target_ids == [[spaced_ids[0], bare_ids[0]]]
    assert result.target_tokens == [[" current", "current"]]
    probs = _own_probs(bundled, PROMPT)
    np.testing.assert_allclose(
        result.target_prob[0, -1, 0], probs[[spaced_ids[0], bare_ids[0]]].numpy(), rtol=1e-4
    )
    # The record survives export.
    again = logitlens.LensResult.from_json(result.to_json())
    assert again.target_tokens == [[" current", "current"]]
    assert again.target_ids == result.target_ids
