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
from lens_checks import PROMPTS, assert_same_arrays, run_every_metric
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
    expected = brute_force_jacobians(model.module, ids[:1], 0, 2)
    # In float64, so that batching must agree exactly, not to fp32 rounding (matmuls of
    # other shapes round differently: up to 7e-6 on entries up to 17 in fp32).
    model.module.double()
    together = prompt_jacobians(model, ids, target_layer=0, skip_first=2, dims_per_pass=64)
    alone = torch.cat(
        [
            prompt_jacobians(model, ids[i : i + 1], target_layer=0, skip_first=2, dims_per_pass=7)
            for i in range(3)
        ]
    )
    assert together.shape == (3, 1, 64, 64) and together.dtype == torch.float64
    torch.testing.assert_close(together, alone, atol=1e-12, rtol=0)
    torch.testing.assert_close(together[0].float(), expected, atol=1e-5, rtol=0)


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


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_identity_jacobian_lens_is_exactly_the_logit_lens(wrap_tiny, model_type):
    model = wrap_tiny(model_type)
    assert_same_arrays(
        run_every_metric(model, JacobianLens.identity(model)), run_every_metric(model, "logit")
    )


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma3", "opt-350m-like", "falcon"])
def test_jacobian_lens_locally_remotely_and_batched(wrap_tiny, model_type):
    hf_model, tokenizer = tiny_model(model_type)
    local = logitlens.load_model(hf_model, tokenizer=tokenizer)
    remote = logitlens.load_model(hf_model, tokenizer=tokenizer, remote="local")
    lens = _random_jacobian_lens(local)
    local_result = run_every_metric(local, lens)
    assert not np.array_equal(local_result.top_probs, run_every_metric(local, "logit").top_probs)
    remote_result = run_every_metric(remote, lens)
    np.testing.assert_allclose(remote_result.top_probs, local_result.top_probs, atol=1e-6)
    np.testing.assert_array_equal(remote_result.top_ids, local_result.top_ids)
    for index, prompt in enumerate(PROMPTS):
        alone = run_every_metric(local, lens, prompts=[prompt])
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
    assert_same_arrays(
        run_every_metric(model, "jacobian", tuned_path=str(path)), run_every_metric(model, jacobian)
    )
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


def test_cli_lens_jacobian_without_a_path_reads_the_cached_file(wrap_tiny, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from logitlens.cli import app, runners
    from logitlens.lenses.files import default_lens_path

    model = wrap_tiny("llama")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(runners, "open_model", lambda *args, **kwargs: model)

    def top(*options: str) -> dict:
        result = CliRunner().invoke(
            app, ["top", PROMPTS[0], "--positions", "all", "--json", *options]
        )
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    cached = default_lens_path(model, "jacobian")
    cached.parent.mkdir(parents=True)
    _random_jacobian_lens(model).save(cached)
    explicit = _random_jacobian_lens(model).save(tmp_path / "j.safetensors")
    assert top("--lens", "jacobian") == top("--lens", "jacobian", "--lens-path", str(explicit))
    assert top("--lens", "jacobian") != top("--lens", "logit")
    cached.unlink()
    result = CliRunner().invoke(app, ["top", PROMPTS[0], "--lens", "jacobian"])
    assert isinstance(result.exception, InputError)  # main() makes it one line, exit 2
    assert "No jacobian lens for" in str(result.exception) and "jlens fit" in str(result.exception)


def _jacobian_rows_by_hooks(hf_model, ids, rows, skip_first):
    """Rows of every source's ``J`` (EMBED, layers 0 .. n-2; target: the last layer), one
    plain backward per row on the full sequence: a zero perturbation added after each
    source, the gradient of ``h_target[valid, i].sum()``, its mean over valid positions."""
    layers = reference.decoder_layers(hf_model)
    length, d_model = ids.shape[1], hf_model.config.hidden_size
    valid = slice(skip_first, length - 1)
    deltas = [torch.zeros(1, length, d_model, requires_grad=True) for _ in layers]
    captured = {}

    def add_before(module, args, kwargs):
        if args:
            return (args[0] + deltas[0], *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] + deltas[0]}

    def add_after(index):
        def hook(module, args, output):
            if index == len(layers) - 1:
                captured["h"] = output[0] if isinstance(output, tuple) else output
                return None
            if isinstance(output, tuple):
                return (output[0] + deltas[index + 1], *output[1:])
            return output + deltas[index + 1]

        return hook

    handles = [layers[0].register_forward_pre_hook(add_before, with_kwargs=True)]
    handles += [layer.register_forward_hook(add_after(i)) for i, layer in enumerate(layers)]
    result = []
    try:
        for row in rows:
            hf_model(input_ids=ids, use_cache=False)
            grads = torch.autograd.grad(captured["h"][0, valid, row].sum(), deltas)
            result.append(torch.stack([grad[0, valid].mean(0) for grad in grads]))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(result, 1)  # [sources, rows, d]


@pytest.mark.bundled
def test_bundled_identity_jlens_and_a_small_fit(bundled):
    """On SmolLM2-135M: the identity J-lens is the logit lens, and two rows of a short
    fit (cache, vmap, eager attention) equal plain per-row backward passes (no cache, SDPA)."""
    assert_same_arrays(
        run_every_metric(bundled, JacobianLens.identity(bundled), prompts=[PROMPTS[0]]),
        run_every_metric(bundled, "logit", prompts=[PROMPTS[0]]),
    )
    ids = bundled.tokenizer(PROMPTS[0], return_tensors="pt").input_ids[:, :14]
    rows = range(299, 301)
    fitted = prompt_jacobians(bundled, ids, skip_first=4, rows=rows, dims_per_pass=1)[0]
    expected = _jacobian_rows_by_hooks(bundled.module, ids, rows, 4)
    scale = expected.abs().max()
    assert fitted.shape == expected.shape == (bundled.n_layers, 2, 576) and scale > 1
    torch.testing.assert_close(fitted, expected, atol=1e-5 * scale.item(), rtol=0)
