"""attribute(): direct logit attribution, checked against an independent computation.

The reference (``reference.direct_logit_attribution``) hooks the plain PyTorch model,
freezes each norm with the textbook formula of its kind (LayerNorm, RMSNorm, Gemma's
``1 + weight``) in float64 and splits heads by slicing the output projection; nothing
in it imports nnsight or logitlens. The identity itself is checked against the model's
own output logits.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from reference import direct_logit_attribution, raw_lens_logits, resid_mid, softcap
from tiny_models import TINY_MODEL_TYPES, tiny_model

import logitlens
from logitlens import InputError
from logitlens.analysis import attribute
from logitlens.attribution import COMPONENTS, Attribution
from logitlens.errors import UnsupportedArchitectureError

PROMPTS = ["The capital of France is", "Hi", "Why do electricians make good swimmers?"]
TARGETS = [" Paris", " current", " swimmers"]
ALTERNATIVES = [" France", " the", " capital"]
TOL = {"rtol": 1e-4, "atol": 1e-4}
POST_LN = ("opt-post_ln", "opt-350m-like")
ADDITIVE = [name for name in TINY_MODEL_TYPES if name not in POST_LN]
# Sequential variants of families whose tiny default is a parallel block.
SEQUENTIAL = {
    "gpt_neox": {"use_parallel_residual": False},
    "falcon": {"parallel_attn": False},
}


@functools.cache
def _tiny(model_type: str, **overrides) -> tuple[logitlens.LensModel, torch.nn.Module]:
    hf_model, tokenizer = tiny_model(model_type, **overrides)
    return logitlens.load_model(hf_model, tokenizer=tokenizer), hf_model


def _ids(model: logitlens.LensModel, text: str, special: bool = True) -> list[int]:
    return list(model.tokenizer(text, add_special_tokens=special)["input_ids"])


@torch.no_grad()
def _own_logits(hf_model, ids: list[int]) -> torch.Tensor:
    return hf_model(torch.tensor([ids]), use_cache=False).logits[0].double()


def _check_identity(result: Attribution, hf_model, model) -> None:
    """embed + parts + constant == the model's own logit (and logit difference).

    Gemma 2/3 soft-cap each logit after the unembedding, so the capped sums are compared.
    """
    cap = softcap(hf_model)

    def capped(values: np.ndarray) -> np.ndarray:
        return cap * np.tanh(values / cap) if cap else values

    for p, prompt in enumerate(result.prompts):
        columns = result.positions[p] >= 0
        positions = result.positions[p][columns]
        own = _own_logits(hf_model, _ids(model, prompt)).numpy()[positions]
        target_total = result.target.total()[p][columns]  # [position, target]
        difference_total = result.difference.total()[p][columns]
        own_target = own[:, result.target_ids[p]]
        own_alternative = own[:, result.alternative_ids[p]]
        np.testing.assert_allclose(capped(target_total), own_target, **TOL, err_msg=prompt)
        np.testing.assert_allclose(
            capped(target_total) - capped(target_total - difference_total),
            own_target - own_alternative,
            **TOL,
            err_msg=prompt,
        )
        for parts in (result.target, result.difference):
            np.testing.assert_allclose(
                parts.total()[p][columns], parts.logit[p][columns], **TOL, err_msg=prompt
            )


@pytest.mark.parametrize("model_type", ADDITIVE)
def test_parts_sum_to_the_models_own_logit_on_every_family(model_type):
    model, hf_model = _tiny(model_type)
    result = attribute(
        model, PROMPTS, target=TARGETS, alternative=ALTERNATIVES, heads=True, positions="all"
    )
    _check_identity(result, hf_model, model)
    for parts in (result.target, result.difference):
        # heads + the output projection's bias == the layer's attention part
        np.testing.assert_allclose(
            np.nansum(parts.heads, axis=2) + parts.head_bias,
            parts.attention,
            **TOL,
            equal_nan=True,
        )
        assert np.isnan(parts.heads).sum() == np.isnan(parts.attention).sum() * result.n_heads


@pytest.mark.parametrize("model_type", ADDITIVE)
def test_every_part_equals_the_plain_pytorch_reference(model_type):
    model, hf_model = _tiny(model_type)
    result = attribute(model, PROMPTS, target=TARGETS, heads=True, positions="all")
    for p, prompt in enumerate(PROMPTS):
        ids = _ids(model, prompt)
        expected = direct_logit_attribution(hf_model, torch.tensor([ids]), result.target_ids[p][0])
        n = len(ids)
        np.testing.assert_array_equal(result.positions[p][:n], np.arange(n))
        got = result.target
        np.testing.assert_allclose(got.embed[p, :n, 0], expected["embed"], **TOL)
        np.testing.assert_allclose(got.attention[p, :, :n, 0], expected["attention"], **TOL)
        np.testing.assert_allclose(got.mlp[p, :, :n, 0], expected["mlp"], **TOL)
        np.testing.assert_allclose(got.heads[p, :, :, :n, 0], expected["heads"], **TOL)
        np.testing.assert_allclose(got.head_bias[p, :, :n, 0], expected["head_bias"], **TOL)
        np.testing.assert_allclose(got.constant[p, :n, 0], expected["constant"], **TOL)
        np.testing.assert_allclose(got.logit[p, :n, 0], expected["logit"], **TOL)
        # The reference's own parts add up too (else it would test nothing).
        total = (
            expected["embed"]
            + expected["attention"].sum(0)
            + expected["mlp"].sum(0)
            + expected["constant"]
        )
        np.testing.assert_allclose(total, expected["logit"], **TOL)


@pytest.mark.parametrize("model_type", sorted(SEQUENTIAL))
def test_sequential_variants_of_parallel_families(model_type):
    model, hf_model = _tiny(model_type, **SEQUENTIAL[model_type])
    result = attribute(
        model, PROMPTS, target=TARGETS, alternative=ALTERNATIVES, heads=True, positions="all"
    )
    _check_identity(result, hf_model, model)
    _check_resid_mid(model, hf_model)


def test_batched_equals_one_by_one_and_positions_pick_columns():
    model, _ = _tiny("gemma2")
    batched = attribute(model, PROMPTS, target=TARGETS, heads=True, positions=[0, -1], batch_size=2)
    for p, prompt in enumerate(PROMPTS):
        alone = attribute(model, prompt, target=TARGETS[p], heads=True, positions=[0, -1])
        for name in ("embed", "components", "heads", "head_bias", "constant", "logit"):
            np.testing.assert_allclose(
                getattr(batched.target, name)[p], getattr(alone.target, name)[0], **TOL
            )
    assert batched.positions[1].tolist() == [0, len(_ids(model, "Hi")) - 1]


def test_remote_local_equals_local():
    hf_model, tokenizer = tiny_model("qwen3")
    here = logitlens.load_model(hf_model, tokenizer=tokenizer)
    simulated = logitlens.load_model(hf_model, tokenizer=tokenizer, remote="local")
    kwargs = {"target": TARGETS, "alternative": ALTERNATIVES, "heads": True}
    first, second = attribute(here, PROMPTS, **kwargs), attribute(simulated, PROMPTS, **kwargs)
    for name in ("embed", "components", "heads", "head_bias", "constant", "logit"):
        np.testing.assert_allclose(
            getattr(first.difference, name), getattr(second.difference, name), **TOL
        )


@pytest.mark.parametrize("model_type", POST_LN)
def test_post_layernorm_checkpoints_are_refused(model_type):
    model, _ = _tiny(model_type)
    with pytest.raises(UnsupportedArchitectureError, match="do_layer_norm_before"):
        attribute(model, PROMPTS[0], target=" Paris")
    with pytest.raises(UnsupportedArchitectureError, match="do_layer_norm_before"):
        logitlens.analyze(model, PROMPTS[0], site="mid")


def test_a_wrong_adapter_entry_is_caught_not_returned():
    from dataclasses import replace

    model, _ = _tiny("llama")
    broken = replace(
        model.architecture,
        sublayers=replace(model.architecture.sublayers, mlp_out="post_attention_layernorm"),
    )
    wrong = replace(model, architecture=broken)
    with pytest.raises(UnsupportedArchitectureError, match="do not rebuild"):
        attribute(wrong, PROMPTS[0], target=" Paris")


def test_dataframe_and_dims():
    model, _ = _tiny("gpt2")
    result = attribute(model, PROMPTS[:2], target=TARGETS[:2], alternative=" the", heads=True)
    frame = result.to_dataframe()
    n_layers, n_heads = result.n_layers, result.n_heads
    per_measure = 2 * (1 + n_layers * (len(COMPONENTS) + n_heads + 1) + 1)
    assert len(frame) == 2 * per_measure
    target_rows = frame[(frame.measure == "target") & (frame.prompt == 0)]
    assert target_rows[~target_rows.part.isin(["head", "head_bias"])].value.sum() == pytest.approx(
        float(result.target.logit[0, 0, 0]), abs=1e-4
    )
    assert result.target.components.ndim == len(Attribution.dims["components"])
    assert result.target.heads.ndim == len(Attribution.dims["heads"])


def test_bad_input_is_one_clear_error():
    model, _ = _tiny("llama")
    with pytest.raises(InputError, match="target"):
        attribute(model, PROMPTS[0], target=None)
    with pytest.raises(InputError, match="shaped like target"):
        attribute(model, PROMPTS[:2], target=" Paris", alternative=[[" the", " a"]] * 2)
    with pytest.raises(InputError, match="load_model"):
        attribute("gpt2", PROMPTS[0], target=" Paris")


# ----- resid_mid ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_type", [name for name in ADDITIVE if name not in ("phi", "gpt_neox", "falcon")]
)
def test_resid_mid_lens_equals_the_plain_hook_reference(model_type):
    _check_resid_mid(*_tiny(model_type))


def _check_resid_mid(model, hf_model) -> None:
    result = logitlens.analyze(
        model, PROMPTS, lens="raw", site="mid", positions="all", targets=TARGETS
    )
    for p, prompt in enumerate(PROMPTS):
        ids = _ids(model, prompt)
        stream = resid_mid(hf_model, torch.tensor([ids]))[:, 0]  # [layers, seq, d]
        logits = raw_lens_logits(hf_model, stream.float()).double()
        expected = logits[..., result.target_ids[p][0]].numpy()
        np.testing.assert_allclose(result.target_logit[p, :, : len(ids), 0], expected, **TOL)


@pytest.mark.parametrize("model_type", ["phi", "gpt_neox", "falcon"])
def test_parallel_blocks_have_no_resid_mid(model_type):
    model, _ = _tiny(model_type)
    with pytest.raises(UnsupportedArchitectureError, match="in parallel"):
        logitlens.analyze(model, PROMPTS[0], site="mid")


def test_trained_lenses_are_refused_at_resid_mid():
    from logitlens.sublayers import resid_mid_path

    model, _ = _tiny("llama")
    for lens in ("tuned", "jacobian"):
        with pytest.raises(InputError, match="trained on layer outputs"):
            resid_mid_path(model, "mid", lens)
    assert resid_mid_path(model, "mid", "logit") == "post_attention_layernorm"
    with pytest.raises(InputError, match="Unknown site"):
        logitlens.analyze(model, PROMPTS[0], site="middle")


# ----- in the analysis trace ----------------------------------------------------------


@pytest.mark.parametrize("site", ["post", "mid"])
def test_attribution_shares_the_lens_trace(site, monkeypatch):
    model, _ = _tiny("gemma3_text")
    kwargs = {"targets": TARGETS, "alternatives": ALTERNATIVES, "positions": "all"}
    metrics = ["topk", "target", "kl", "logit_diff"]
    plain = logitlens.analyze(model, PROMPTS, site=site, metrics=metrics, **kwargs)
    traces = []
    real_trace = type(model.nn).trace

    def counted(self, *args, **kw):
        traces.append(1)
        return real_trace(self, *args, **kw)

    monkeypatch.setattr(type(model.nn), "trace", counted)
    both = logitlens.analyze(
        model, PROMPTS, site=site, metrics=metrics, attribution=True, heads=True, **kwargs
    )
    assert len(traces) == 1  # one batch, one trace: lenses and attribution together
    for name in ("target_prob", "kl", "logit_diff", "top_ids"):
        np.testing.assert_allclose(getattr(both, name), getattr(plain, name), **TOL)
    alone = attribute(
        model, PROMPTS, target=TARGETS, alternative=ALTERNATIVES, heads=True, positions="all"
    )
    for name in ("embed", "components", "heads", "head_bias", "constant", "logit"):
        np.testing.assert_allclose(
            getattr(both.attribution.difference, name), getattr(alone.difference, name), **TOL
        )
    # The model's own last-layer logit (the lens's, soft-capped) is the parts' total.
    cap = softcap(_tiny("gemma3_text")[1])
    np.testing.assert_allclose(
        cap * np.tanh(both.attribution.target.total() / cap),
        plain.target_logit[:, -1]
        if site == "post"
        else logitlens.analyze(
            model, PROMPTS, layers=[-1], metrics=["target"], **kwargs
        ).target_logit[:, 0],
        **TOL,
    )


def test_analyze_attribution_needs_targets():
    model, _ = _tiny("llama")
    with pytest.raises(InputError, match="attribution=True needs targets"):
        logitlens.analyze(model, PROMPTS[0], attribution=True)
