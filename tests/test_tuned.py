"""Tests for logitlens.tuned: the lens, its file format, and the model fingerprint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from lens_checks import METRICS, assert_same_arrays, run_every_metric
from tiny_models import TINY_MODEL_TYPES, tiny_model

import logitlens
from logitlens.errors import InputError, LensFileError
from logitlens.lenses import TunedLens, get_lens
from logitlens.lenses.files import model_fingerprint, write_safetensors
from logitlens.lenses.tuned import CONFIG_KEY


def _random_lens(model, seed=0, scale=0.05) -> TunedLens:
    lens = TunedLens.identity(model)
    generator = torch.Generator().manual_seed(seed)
    lens.weight.copy_(torch.randn(lens.weight.shape, generator=generator) * scale)
    lens.bias.copy_(torch.randn(lens.bias.shape, generator=generator) * scale)
    return lens


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_identity_lens_is_exactly_the_logit_lens(wrap_tiny, model_type):
    model = wrap_tiny(model_type)
    assert_same_arrays(
        run_every_metric(model, TunedLens.identity(model)), run_every_metric(model, "logit")
    )


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_translators_travel_with_a_remote_request(wrap_tiny, model_type):
    """nnsight's remote='local' round trip serializes the lens and its tensors."""
    hf_model, tokenizer = tiny_model(model_type)
    local = logitlens.load_model(hf_model, tokenizer=tokenizer)
    remote = logitlens.load_model(hf_model, tokenizer=tokenizer, remote="local")
    lens = _random_lens(local)
    local_result, remote_result = run_every_metric(local, lens), run_every_metric(remote, lens)
    assert not np.array_equal(local_result.top_probs, run_every_metric(local, "logit").top_probs)
    np.testing.assert_allclose(remote_result.top_probs, local_result.top_probs, atol=1e-6)
    np.testing.assert_array_equal(remote_result.top_ids, local_result.top_ids)


def test_translator_is_affine_per_layer(wrap_tiny):
    model = wrap_tiny("llama")
    lens = _random_lens(model)
    hidden = torch.randn(2, 5, lens.bias.shape[1])
    out = lens.translate(hidden, [logitlens.EMBED, 1])
    for row, slot in enumerate((0, 2)):
        expected = hidden[row] + hidden[row] @ lens.weight[slot].T + lens.bias[slot]
        torch.testing.assert_close(out[row], expected)


def test_project_follows_the_hidden_states_dtype(wrap_tiny):
    model = wrap_tiny("llama")
    model.module.to(torch.float64)
    lens = _random_lens(model)
    from logitlens.lenses import Unembedding

    unembedding = Unembedding(model.module, model.architecture, model.config)
    logits = lens.project(unembedding, torch.randn(1, 3, lens.bias.shape[1]).double(), [0])
    assert logits.dtype == torch.float64


def test_save_and_load_is_bit_identical(wrap_tiny, tmp_path):
    model = wrap_tiny("gpt2")
    lens = _random_lens(model)
    lens.info = {"note": "test"}
    path = lens.save(tmp_path / "lens.safetensors")
    loaded = get_lens("tuned", str(path))
    assert isinstance(loaded, TunedLens) and loaded.info == {"note": "test"}
    assert torch.equal(loaded.weight, lens.weight) and torch.equal(loaded.bias, lens.bias)
    assert_same_arrays(run_every_metric(model, loaded), run_every_metric(model, lens))
    assert_same_arrays(
        run_every_metric(model, "tuned", tuned_path=str(path)), run_every_metric(model, lens)
    )
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind
    assert path.read_bytes()[:8] != b"\x80\x04\x95"  # not a pickle


def test_lens_for_another_model_is_refused_naming_both(wrap_tiny, tmp_path):
    lens = _random_lens(wrap_tiny("llama", seed=0))
    path = lens.save(tmp_path / "lens.safetensors")
    other_weights = wrap_tiny("llama", seed=1)
    with pytest.raises(LensFileError, match=r"trained for .*llama.*not for .*llama") as error:
        logitlens.analyze(other_weights, "hi", lens="tuned", tuned_path=str(path))
    assert str(path) in str(error.value)
    with pytest.raises(LensFileError, match="gpt2"):
        logitlens.analyze(wrap_tiny("gpt2"), "hi", lens=TunedLens.load(path))


def test_fingerprint_ignores_precision_but_not_weights(wrap_tiny):
    model = wrap_tiny("llama")
    before = model_fingerprint(model)
    model.module.to(torch.bfloat16)
    assert model_fingerprint(model) == before
    with torch.no_grad():
        model.module.lm_head.weight.mul_(2)
    assert model_fingerprint(model)["weights_sha256"] != before["weights_sha256"]


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(LensFileError, match="No tuned-lens file"):
        TunedLens.load(tmp_path / "nothing.safetensors")
    with pytest.raises(InputError, match="tuned_path"):
        get_lens("tuned")


def test_non_safetensors_and_corrupt_files_are_refused(wrap_tiny, tmp_path):
    pickled = tmp_path / "lens.pt"
    torch.save({"weight": torch.zeros(2)}, pickled)
    text = tmp_path / "lens.txt"
    text.write_text("hello")
    good = _random_lens(wrap_tiny("llama")).save(tmp_path / "good.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbled = tmp_path / "garbled.safetensors"
    garbled.write_bytes(b"\xff" * 8 + good.read_bytes()[8:])
    for path in (pickled, text, truncated, garbled):
        with pytest.raises(LensFileError, match="not a readable safetensors"):
            TunedLens.load(path)


def test_safetensors_that_is_not_a_lens_is_refused(tmp_path):
    path = write_safetensors(tmp_path / "x.safetensors", {"weight": torch.zeros(2)}, {})
    with pytest.raises(LensFileError, match="not a logitlens tuned lens"):
        TunedLens.load(path)
    config = {"format": "logitlens-tuned-lens", "n_layers": 3, "d_model": 4, "model": {}}
    tensors = {"weight": torch.zeros(2, 4, 4), "bias": torch.zeros(2, 4)}
    path = write_safetensors(tmp_path / "y.safetensors", tensors, {CONFIG_KEY: json.dumps(config)})
    with pytest.raises(LensFileError, match="inconsistent"):
        TunedLens.load(path)


PUN = "Why do electricians make good swimmers? Because they know the"


@pytest.mark.bundled
def test_bundled_identity_lens_and_refusal(bundled, wrap_tiny, tmp_path):
    identity = TunedLens.identity(bundled)
    assert identity.weight.shape == (31, 576, 576)
    first = logitlens.analyze(bundled, PUN, lens=identity, targets=" current", metrics=METRICS)
    second = logitlens.analyze(bundled, PUN, lens="logit", targets=" current", metrics=METRICS)
    assert_same_arrays(first, second)
    tiny_lens = TunedLens.identity(wrap_tiny("llama")).save(tmp_path / "tiny.safetensors")
    with pytest.raises(LensFileError, match="not for 'SmolLM2-135M-Instruct'"):
        logitlens.analyze(bundled, PUN, lens="tuned", tuned_path=str(tiny_lens))


@pytest.mark.bundled
def test_bundled_trained_lens_beats_the_logit_lens(bundled):
    """The paper's central claim, on held-out text the lens never saw in training."""
    from logitlens.evaluation import evaluate_lenses
    from logitlens.lenses.files import default_lens_path
    from logitlens.training import TrainingConfig, train_tuned_lens
    from logitlens.training.corpus import bible_documents, split_documents

    path = default_lens_path(bundled)
    if path.is_file():  # made by scripts/train_bundled_lens.py or an earlier run of this test
        lens = TunedLens.load(path)
    else:  # the default options, as the script uses: ~2.5 minutes on 2 CPU cores
        lens = train_tuned_lens(bundled, path, TrainingConfig())
    _, heldout = split_documents(bible_documents())
    evaluation = evaluate_lenses(bundled, ["logit", lens], heldout, max_tokens=128)
    for layer, tuned, logit in zip(
        evaluation.layers[:-1], evaluation.kl["tuned"], evaluation.kl["logit"], strict=False
    ):
        assert tuned < logit, f"layer {layer}: tuned KL {tuned:.3f} >= logit KL {logit:.3f}"
