"""Tests for logitlens.lenses.jacobian and logitlens.training.jacobian.

The fit is compared with a brute-force Jacobian: ``torch.autograd.functional.jacobian``
of the target layer's residual with respect to a perturbation added to a source
layer's residual (plain hooks, the full sequence), then the estimator's reductions.
"""

from __future__ import annotations

import numpy as np
import pytest
import reference
import torch
from tiny_models import TINY_MODEL_TYPES, tiny_model

import logitlens
from logitlens.errors import InputError, LensFileError
from logitlens.lenses import EMBED, JacobianLens, TunedLens, get_lens, load_lens
from logitlens.lenses.files import model_fingerprint
from logitlens.training.jacobian import (
    JacobianFitConfig,
    fit_jacobian_lens,
    merge_jacobian_lenses,
    prompt_jacobians,
)

PROMPTS = ["Why do electricians make good swimmers? Because they know the", "The river bank"]
METRICS = ["topk", "target", "entropy", "kl", "final_rank"]
FAMILIES = ["llama", "gpt2", "gemma2", "falcon", "bloom", "qwen3_moe", "opt-350m-like", "phi"]


def brute_force_jacobians(
    hf_model: torch.nn.Module, ids: torch.Tensor, target: int, skip_first: int
) -> torch.Tensor:
    """``[target + 1, d, d]``: for EMBED and layers ``0 .. target - 1``, the mean over valid
    source positions ``p`` of ``sum_{p' valid} d h_target[p'] / d h_source[p]``."""
    layers = reference.decoder_layers(hf_model)
    length = ids.shape[1]
    valid = torch.arange(skip_first, length - 1)
    results = []
    for source in [EMBED, *range(target)]:

        def target_residual(delta: torch.Tensor, source: int = source) -> torch.Tensor:
            captured = {}

            def add_before(module, args, kwargs):
                if args:
                    return (args[0] + delta, *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + delta}

            def add_after(module, args, output):
                if isinstance(output, tuple):
                    return (output[0] + delta, *output[1:])
                return output + delta

            def keep(module, args, output):
                captured["h"] = output[0] if isinstance(output, tuple) else output

            if source == EMBED:
                handles = [layers[0].register_forward_pre_hook(add_before, with_kwargs=True)]
            else:
                handles = [layers[source].register_forward_hook(add_after)]
            handles.append(layers[target].register_forward_hook(keep))
            try:
                hf_model(input_ids=ids, use_cache=False)
            finally:
                for handle in handles:
                    handle.remove()
            return captured["h"][0]

        d_model = hf_model.config.hidden_size
        zero = torch.zeros(1, length, d_model)
        full = torch.autograd.functional.jacobian(target_residual, zero, vectorize=True)
        full = full[:, :, 0]  # [target pos, out dim, source pos, in dim]
        summed = full[valid][:, :, valid].sum(0)  # over target positions
        results.append(summed.mean(1))  # over source positions -> [out, in]
    return torch.stack(results)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_fit_equals_the_brute_force_jacobian(wrap_tiny, model_type):
    model = wrap_tiny(model_type)
    ids = torch.randint(4, 500, (3, 11), generator=torch.Generator().manual_seed(0))
    config = JacobianFitConfig(n_texts=3, seq_len=11, skip_first=3, dims_per_pass=24, batch_size=2)
    lens = fit_jacobian_lens(model, ids, config, progress=False)
    expected = torch.stack(
        [brute_force_jacobians(model.module, ids[i : i + 1], 1, 3) for i in range(3)]
    ).mean(0)
    assert lens.info["fitted_layers"] == [EMBED, 0] and lens.n_prompts == 3
    torch.testing.assert_close(lens.jacobians[:2], expected, atol=1e-5, rtol=0)
    identity = torch.eye(expected.shape[-1])
    assert torch.equal(lens.jacobians[2], identity)  # the target layer itself
    assert not torch.allclose(expected, identity.expand_as(expected), atol=1e-2)


def test_target_layer_and_batching(wrap_tiny):
    model = wrap_tiny("llama")
    ids = torch.randint(4, 500, (3, 10), generator=torch.Generator().manual_seed(1))
    together = prompt_jacobians(model, ids, target_layer=0, skip_first=2, dims_per_pass=64)
    alone = torch.cat(
        [
            prompt_jacobians(model, ids[i : i + 1], target_layer=0, skip_first=2, dims_per_pass=7)
            for i in range(3)
        ]
    )
    assert together.shape == (3, 1, 64, 64)
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=0)
    expected = brute_force_jacobians(model.module, ids[:1], 0, 2)
    torch.testing.assert_close(together[0], expected, atol=1e-5, rtol=0)


def test_resume_is_bit_identical_and_shards_merge(wrap_tiny, tmp_path):
    model = wrap_tiny("gpt2")
    ids = torch.randint(4, 500, (5, 9), generator=torch.Generator().manual_seed(2))
    config = JacobianFitConfig(n_texts=5, seq_len=9, skip_first=2, dims_per_pass=32, batch_size=2)
    whole = fit_jacobian_lens(
        model, ids, config, output=tmp_path / "whole.safetensors", progress=False
    )

    def interrupt(report):
        if report.prompts_done == 2:
            raise KeyboardInterrupt

    path = tmp_path / "resumed.safetensors"
    with pytest.raises(KeyboardInterrupt):
        fit_jacobian_lens(model, ids, config, output=path, progress=False, on_batch=interrupt)
    assert (tmp_path / "resumed.safetensors.checkpoint").is_file() and not path.exists()
    resumed = fit_jacobian_lens(model, ids, config, output=path, progress=False)
    assert torch.equal(resumed.weight, whole.weight)
    assert not (tmp_path / "resumed.safetensors.checkpoint").exists()
    with pytest.raises(KeyboardInterrupt):  # leaves a checkpoint
        fit_jacobian_lens(model, ids, config, output=path, progress=False, on_batch=interrupt)
    with pytest.raises(InputError, match=r"different fit .*differs in: dims_per_pass"):
        changed = JacobianFitConfig(**{**config.__dict__, "dims_per_pass": 8})
        fit_jacobian_lens(model, ids, changed, output=path, progress=False)

    first = fit_jacobian_lens(
        model,
        ids[:2],
        JacobianFitConfig(**{**config.__dict__, "n_texts": 2}),
        output=tmp_path / "a.safetensors",
        progress=False,
    )
    second = fit_jacobian_lens(
        model, ids[2:], JacobianFitConfig(**{**config.__dict__, "n_texts": 3}), progress=False
    )
    merged = merge_jacobian_lenses([first.path, second])
    assert merged.n_prompts == 5
    torch.testing.assert_close(merged.weight, whole.weight, atol=1e-6, rtol=0)
    other = fit_jacobian_lens(
        wrap_tiny("gpt2", seed=1),
        ids[:2],
        JacobianFitConfig(**{**config.__dict__, "n_texts": 2}),
        progress=False,
    )
    with pytest.raises(LensFileError, match="merge fits of one model"):
        merge_jacobian_lenses([first, other])


def _random_jacobian_lens(model, seed=0, scale=0.05) -> JacobianLens:
    generator = torch.Generator().manual_seed(seed)
    fingerprint = model_fingerprint(model)
    slots, d_model = fingerprint["n_layers"] + 1, fingerprint["d_model"]
    noise = torch.randn(slots, d_model, d_model, generator=generator) * scale
    return JacobianLens.from_jacobians(torch.eye(d_model) + noise, fingerprint)


def _run(model, lens, prompts=PROMPTS, **kwargs):
    return logitlens.analyze(
        model,
        prompts,
        lens=lens,
        metrics=METRICS,
        targets=" current",
        positions="all",
        include_embed=True,
        **kwargs,
    )


def _assert_same(first, second):
    for name in ("top_ids", "top_probs", "target_prob", "target_rank", "entropy", "kl"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name), err_msg=name)


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_identity_jacobian_lens_is_exactly_the_logit_lens(wrap_tiny, model_type):
    model = wrap_tiny(model_type)
    _assert_same(_run(model, JacobianLens.identity(model)), _run(model, "logit"))


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma3", "opt-350m-like", "falcon"])
def test_jacobian_lens_locally_remotely_and_batched(wrap_tiny, model_type):
    hf_model, tokenizer = tiny_model(model_type)
    local = logitlens.load_model(hf_model, tokenizer=tokenizer)
    remote = logitlens.load_model(hf_model, tokenizer=tokenizer, remote="local")
    lens = _random_jacobian_lens(local)
    local_result = _run(local, lens)
    assert not np.array_equal(local_result.top_probs, _run(local, "logit").top_probs)
    remote_result = _run(remote, lens)
    np.testing.assert_allclose(remote_result.top_probs, local_result.top_probs, atol=1e-6)
    np.testing.assert_array_equal(remote_result.top_ids, local_result.top_ids)
    for index, prompt in enumerate(PROMPTS):
        alone = _run(local, lens, prompts=[prompt])
        length = len(alone.token_ids[0])
        np.testing.assert_allclose(
            alone.top_probs[0], local_result.top_probs[index][:, :length], atol=1e-5
        )


def test_jacobian_lens_applies_j_before_the_final_norm(wrap_tiny):
    model = wrap_tiny("llama")
    lens = _random_jacobian_lens(model)
    hidden = torch.randn(2, 3, 64)
    from logitlens.lenses import Unembedding

    unembedding = Unembedding(model.module, model.architecture, model.config)
    logits = lens.project(unembedding, hidden, [EMBED, 1])
    norm, head = reference.final_norm(model.module), model.module.lm_head
    for row, slot in enumerate((0, 2)):
        expected = head(norm(hidden[row] @ lens.jacobians[slot].T))
        torch.testing.assert_close(logits[row], expected)


def test_files_say_their_kind(wrap_tiny, tmp_path):
    model = wrap_tiny("llama")
    jacobian = _random_jacobian_lens(model)
    jacobian.info = {"n_prompts": 7}
    path = jacobian.save(tmp_path / "j.safetensors")
    loaded = get_lens("jacobian", str(path))
    assert isinstance(loaded, JacobianLens) and loaded.n_prompts == 7
    assert torch.equal(loaded.weight, jacobian.weight)
    assert isinstance(load_lens(str(path)), JacobianLens)
    _assert_same(_run(model, "jacobian", tuned_path=str(path)), _run(model, jacobian))
    tuned = TunedLens.identity(model)
    tuned_path = tuned.save(tmp_path / "t.safetensors")
    assert type(load_lens(str(tuned_path))) is TunedLens
    with pytest.raises(LensFileError, match="holds a jacobian lens, not a tuned lens"):
        TunedLens.load(path)
    with pytest.raises(LensFileError, match="holds a tuned lens, not a jacobian lens"):
        get_lens("jacobian", str(tuned_path))
    with pytest.raises(InputError, match="jlens fit"):
        get_lens("jacobian")
    with pytest.raises(LensFileError, match="non-zero bias"):
        JacobianLens(jacobian.weight, torch.ones_like(jacobian.bias), jacobian.fingerprint)


def test_jacobian_lens_for_another_model_is_refused(wrap_tiny, tmp_path):
    path = _random_jacobian_lens(wrap_tiny("llama")).save(tmp_path / "j.safetensors")
    with pytest.raises(LensFileError, match=r"jacobian lens .* for .*llama.*not for .*gpt2"):
        logitlens.analyze(wrap_tiny("gpt2"), "hi", lens="jacobian", tuned_path=str(path))


def test_bad_options_are_refused(wrap_tiny):
    model = wrap_tiny("llama")
    ids = torch.randint(4, 500, (1, 8))
    with pytest.raises(InputError, match="exceed skip_first"):
        fit_jacobian_lens(model, ids, JacobianFitConfig(seq_len=8, skip_first=7))
    with pytest.raises(InputError, match="Target layer 5"):
        fit_jacobian_lens(model, ids, JacobianFitConfig(seq_len=8, skip_first=2, target_layer=5))
    with pytest.raises(InputError, match="shorter than one sequence"):
        fit_jacobian_lens(model, ["hi"], JacobianFitConfig(seq_len=64, skip_first=2))


def test_jacobian_lens_is_a_lens_with_weights_like_the_tuned_lens():
    """Remote runs keep lenses with weights here and apply them to the saved residuals."""
    assert JacobianLens.carries_weights and TunedLens.carries_weights
    assert not logitlens.LogitLens.carries_weights
