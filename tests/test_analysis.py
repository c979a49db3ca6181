"""analyze(): every number checked against an independent computation.

The references are the model's own ``forward`` logits and the plain-PyTorch hook
lens in ``reference.py``; statistics (softmax, top-k, ranks, entropy, KL) are
recomputed here in float64 from those logits, never copied from a run.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from reference import embed_residual, logit_lens_logits, raw_lens_logits, residuals
from tiny_models import TINY_MODEL_TYPES, tiny_model

import logitlens
from logitlens import EMBED, InputError, LensResult

ALL_METRICS = ["topk", "target", "target_rank", "entropy", "kl", "final_rank"]
PROMPTS = [
    "The capital of France is",
    "Hi",
    "Why do electricians make good swimmers? Because they know the",
]
# Different targets per prompt, all single tokens on the tiny tokenizer.
TARGETS = [[" Paris", " current"], [" the", " France"], [" current", " swimmers"]]
# Every metric, position and layer (embedding included), for whole-result comparisons.
EVERYTHING = {
    "positions": "all",
    "metrics": ALL_METRICS,
    "targets": TARGETS,
    "include_embed": True,
    "k": 5,
}
PUN = "Why do electricians make good swimmers? Because they know the"

PROB_TOL = {"rtol": 1e-4, "atol": 1e-5}
LOGIT_TOL = {"rtol": 1e-4, "atol": 1e-4}
NATS_TOL = {"rtol": 1e-4, "atol": 5e-5}


@functools.cache
def _tiny(model_type: str, **overrides) -> logitlens.LensModel:
    """One wrapped tiny model per family (and overrides) for the whole module.

    Tests that change ``remote`` build their own model instead.
    """
    hf_model, tokenizer = tiny_model(model_type, **overrides)
    return logitlens.load_model(hf_model, tokenizer=tokenizer)


def _ids(model: logitlens.LensModel, prompt: str) -> list[int]:
    return list(model.tokenizer(prompt, add_special_tokens=True)["input_ids"])


def _token_id(model: logitlens.LensModel, text: str) -> int:
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    assert len(ids) == 1, (text, ids)
    return ids[0]


# ----- reference statistics ---------------------------------------------------------


@torch.no_grad()
def _model_logits(hf_model, ids: list[int]) -> torch.Tensor:
    """The model's own next-token logits ``[seq, vocab]`` (float64)."""
    return hf_model(torch.tensor([ids]), use_cache=False).logits[0].double()


@torch.no_grad()
def _reference_lens_logits(hf_model, ids: list[int], lens: str, layers: list[int]) -> torch.Tensor:
    """Lens logits ``[len(layers), seq, vocab]`` (float64) from the hook reference."""
    input_ids = torch.tensor([ids])
    stream = residuals(hf_model, input_ids)[:, 0]
    rows = []
    for layer in layers:
        rows.append(embed_residual(hf_model, input_ids)[0] if layer == EMBED else stream[layer])
    project = logit_lens_logits if lens == "logit" else raw_lens_logits
    return project(hf_model, torch.stack(rows)).double()


def _rank_bounds(logits: torch.Tensor, token: int) -> tuple[int, int]:
    """The 1-based rank of ``token`` with a small tolerance band for near-ties."""
    value = logits[token].item()
    eps = 1e-4 * max(1.0, abs(value))
    low = 1 + int((logits > value + eps).sum())
    high = int((logits > value - eps).sum())  # counts the token itself
    return low, high


def _check_topk(ids: np.ndarray, probs: np.ndarray, ref_probs: torch.Tensor, where: str):
    """Top-k ids/probs agree with a reference distribution (tie-order tolerant)."""
    k = len(ids)
    expected = torch.sort(ref_probs, descending=True).values[:k].numpy()
    np.testing.assert_allclose(probs, expected, **PROB_TOL, err_msg=f"{where}: top-k probs")
    np.testing.assert_allclose(
        ref_probs[torch.as_tensor(ids)].numpy(), probs, **PROB_TOL, err_msg=f"{where}: ids"
    )
    assert len(set(ids.tolist())) == k, f"{where}: repeated ids {ids}"
    # Where the reference has a clear gap, the order must match exactly.
    order = torch.argsort(ref_probs, descending=True)[:k].numpy()
    gaps = np.abs(np.diff(expected))
    for j in range(k):
        left = gaps[j - 1] if j > 0 else np.inf
        right = gaps[j] if j < k - 1 else np.inf
        if min(left, right) > 1e-5:
            assert ids[j] == order[j], f"{where}: top-{j + 1} id {ids[j]} != {order[j]}"


def _check_against_reference(
    result: LensResult,
    hf_model,
    prompt: int,
    lens: str,
    target_ids: list[int],
) -> None:
    """Every array of ``result`` for one prompt equals a recomputation from scratch."""
    ids = result.token_ids[prompt]
    logits = _reference_lens_logits(hf_model, ids, lens, result.layers)
    logprobs = logits.log_softmax(-1)
    probs = logprobs.exp()
    final = _model_logits(hf_model, ids)
    final_logprobs = final.log_softmax(-1)
    final_top = final.argmax(-1)
    for column, position in enumerate(result.positions[prompt]):
        if position < 0:
            continue
        for li, layer in enumerate(result.layers):
            where = f"prompt {prompt}, layer {layer}, position {position}"
            row_logits, row_probs = logits[li, position], probs[li, position]
            if result.top_ids is not None:
                _check_topk(
                    result.top_ids[prompt, li, column],
                    result.top_probs[prompt, li, column],
                    row_probs,
                    where,
                )
            if result.target_prob is not None:
                for t, token in enumerate(target_ids):
                    assert result.target_ids[prompt][t] == token
                    np.testing.assert_allclose(
                        result.target_prob[prompt, li, column, t],
                        row_probs[token].item(),
                        **PROB_TOL,
                        err_msg=f"{where}: target prob",
                    )
                    np.testing.assert_allclose(
                        result.target_logit[prompt, li, column, t],
                        row_logits[token].item(),
                        **LOGIT_TOL,
                        err_msg=f"{where}: target logit",
                    )
                    low, high = _rank_bounds(row_logits, token)
                    rank = result.target_rank[prompt, li, column, t]
                    assert low <= rank <= high, f"{where}: target rank {rank} not in {low}..{high}"
            if result.entropy is not None:
                expected = -(row_probs * logprobs[li, position]).sum().item()
                np.testing.assert_allclose(
                    result.entropy[prompt, li, column], expected, **NATS_TOL, err_msg=where
                )
            if result.kl is not None:
                reference = final_logprobs[position]
                expected = (reference.exp() * (reference - logprobs[li, position])).sum().item()
                np.testing.assert_allclose(
                    result.kl[prompt, li, column], expected, **NATS_TOL, err_msg=f"{where}: KL"
                )
            if result.final_rank is not None:
                low, high = _rank_bounds(row_logits, int(final_top[position]))
                rank = result.final_rank[prompt, li, column]
                assert low <= rank <= high, f"{where}: final rank {rank} not in {low}..{high}"
        if result.model_top_ids is not None:
            top2 = torch.topk(final[position], 2).values
            if (top2[0] - top2[1]).item() > 1e-4:
                assert result.model_top_ids[prompt, column] == final_top[position].item()


def _assert_results_close(a: LensResult, b: LensResult, atol: float = 1e-4) -> None:
    """Same layers, positions and values (NaN/-1 in the same places)."""
    assert a.layers == b.layers
    assert a.token_ids == b.token_ids
    np.testing.assert_array_equal(a.positions, b.positions)
    assert a.target_ids == b.target_ids
    for name in LensResult.DIMS:
        if name == "positions":
            continue
        left, right = getattr(a, name), getattr(b, name)
        assert (left is None) == (right is None), name
        if left is None:
            continue
        assert left.shape == right.shape, name
        if np.issubdtype(left.dtype, np.floating):
            np.testing.assert_array_equal(np.isnan(left), np.isnan(right), err_msg=name)
            np.testing.assert_allclose(left, right, rtol=1e-4, atol=atol, err_msg=name)
        elif name in ("target_rank", "final_rank"):
            _assert_ranks_close(left, right, name)
        elif name == "top_ids":
            _assert_top_ids_close(a, b)
        else:
            np.testing.assert_array_equal(left, right, err_msg=name)


def _assert_ranks_close(left: np.ndarray, right: np.ndarray, name: str) -> None:
    """Ranks equal, except a near-tie flipped by float rounding (one place, rarely).

    Batching and chunking change matmul shapes, which changes the last bits of the
    logits; a rank is discontinuous, so two tokens within ~1e-7 may swap places.
    """
    differ = left != right
    assert np.abs(left - right).max(initial=0) <= 1, name
    allowed = max(1, int(0.02 * differ.size))  # the docstring's "one place" on small arrays
    assert differ.sum() <= allowed, f"{name}: {differ.sum()} of {differ.size} ranks differ"


def _assert_top_ids_close(a: LensResult, b: LensResult) -> None:
    """Top-k ids equal wherever the probabilities are not tied to within rounding."""
    differ = a.top_ids != b.top_ids
    gaps = np.abs(np.diff(b.top_probs, axis=-1))
    near_tie = np.zeros_like(differ)
    near_tie[..., :-1] |= gaps < 1e-5
    near_tie[..., 1:] |= gaps < 1e-5
    assert not (differ & ~near_tie).any(), "top_ids differ where probabilities are not tied"


def _select(result: LensResult, prompt: int) -> LensResult:
    """The sub-result of one prompt, trimmed to its own columns (for comparisons)."""
    n = int((result.positions[prompt] >= 0).sum())
    kwargs = {}
    for name in LensResult.DIMS:
        value = getattr(result, name)
        if value is None or name == "positions":
            continue
        value = value[prompt : prompt + 1]
        kwargs[name] = value[:, :n] if name == "model_top_ids" else value[:, :, :n]
    return LensResult(
        model_name=result.model_name,
        lens=result.lens,
        prompts=[result.prompts[prompt]],
        tokens=[result.tokens[prompt]],
        token_ids=[result.token_ids[prompt]],
        layers=result.layers,
        positions=result.positions[prompt : prompt + 1, :n],
        k=result.k,
        target_ids=[result.target_ids[prompt]],
        target_tokens=[result.target_tokens[prompt]],
        **kwargs,
    )


# ----- (a) the last layer's logit lens is the model's output -------------------------


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_last_layer_logit_lens_is_the_models_output(model_type):
    model = _tiny(model_type)
    hf_model = model.module
    k = 10
    result = logitlens.analyze(
        model, PROMPTS, layers=-1, positions="all", k=k, targets=TARGETS, metrics=ALL_METRICS
    )
    assert result.layers == [model.n_layers - 1]
    for p, prompt in enumerate(PROMPTS):
        ids = _ids(model, prompt)
        assert result.token_ids[p] == ids
        assert result.positions[p, : len(ids)].tolist() == list(range(len(ids)))
        assert (result.positions[p, len(ids) :] == -1).all()
        probs = _model_logits(hf_model, ids).softmax(-1)
        targets = [_token_id(model, t) for t in TARGETS[p]]
        for position in range(len(ids)):
            where = f"{model_type} prompt {p} position {position}"
            _check_topk(
                result.top_ids[p, 0, position],
                result.top_probs[p, 0, position],
                probs[position],
                where,
            )
            np.testing.assert_allclose(
                result.target_prob[p, 0, position],
                probs[position, targets].numpy(),
                **PROB_TOL,
                err_msg=where,
            )
        valid = slice(0, len(ids))
        assert (np.abs(result.kl[p, 0, valid]) < 1e-5).all(), result.kl[p, 0, valid]
        assert (result.final_rank[p, 0, valid] == 1).all()
        np.testing.assert_array_equal(result.model_top_ids[p, valid], probs.argmax(-1).numpy())
        # Padding columns hold NaN / -1.
        assert np.isnan(result.kl[p, 0, len(ids) :]).all()
        assert (result.top_ids[p, 0, len(ids) :] == -1).all()


# ----- (b) every layer equals the hook reference ------------------------------------


@pytest.mark.parametrize("lens", ["logit", "raw"])
@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_every_layer_matches_the_reference(model_type, lens):
    model = _tiny(model_type)
    result = logitlens.analyze(
        model,
        PROMPTS,
        lens=lens,
        positions="all",
        include_embed=True,
        k=5,
        targets=TARGETS,
        metrics=ALL_METRICS,
    )
    assert result.lens == lens
    assert result.layers == [EMBED, *range(model.n_layers)]
    assert result.k == 5
    for p in range(len(PROMPTS)):
        targets = [_token_id(model, t) for t in TARGETS[p]]
        assert result.target_tokens[p] == TARGETS[p]
        _check_against_reference(result, model.module, p, lens, targets)


def test_raw_and_logit_lens_differ_where_a_final_norm_exists():
    """Guards the reference check: the two lenses really compute different things."""
    model = _tiny("llama")
    kwargs = {"positions": "all", "metrics": ["entropy"], "layers": [0]}
    logit = logitlens.analyze(model, PROMPTS[0], lens="logit", **kwargs)
    raw = logitlens.analyze(model, PROMPTS[0], lens="raw", **kwargs)
    assert np.abs(logit.entropy - raw.entropy).max() > 1e-3


# ----- (b2) metrics added through the registry alone -----------------------------------

ALTERNATIVES = [[" France", " Paris"], [" France", " the"], [" swimmers", " current"]]


@pytest.mark.parametrize("lens", ["logit", "raw"])
@pytest.mark.parametrize("model_type", ["llama", "gemma2", "gpt2", "falcon"])
def test_logit_diff_and_next_token_ce_match_the_reference(model_type, lens):
    model = _tiny(model_type)
    result = logitlens.analyze(
        model,
        PROMPTS,
        lens=lens,
        positions="all",
        include_embed=True,
        targets=TARGETS,
        alternatives=ALTERNATIVES,
        metrics=["logit_diff", "next_token_ce"],
    )
    assert result.alternative_tokens == ALTERNATIVES
    assert result.top_ids is None and result.target_rank is None  # only what was asked
    for p, prompt in enumerate(PROMPTS):
        ids = _ids(model, prompt)
        logits = _reference_lens_logits(model.module, ids, lens, result.layers)
        logprobs = logits.log_softmax(-1)
        for t, (target, alternative) in enumerate(zip(TARGETS[p], ALTERNATIVES[p], strict=True)):
            expected = (
                logits[..., _token_id(model, target)] - logits[..., _token_id(model, alternative)]
            )
            np.testing.assert_allclose(
                result.logit_diff[p, :, : len(ids), t], expected.numpy(), **LOGIT_TOL
            )
        following = torch.tensor(ids[1:])
        expected_ce = -logprobs[:, :-1].gather(-1, following.expand(len(logits), -1)[..., None])
        np.testing.assert_allclose(
            result.next_token_ce[p, :, : len(ids) - 1], expected_ce[..., 0].numpy(), **NATS_TOL
        )
        assert np.isnan(result.next_token_ce[p, :, len(ids) - 1]).all()  # no next token
        assert np.isnan(result.next_token_ce[p, :, len(ids) :]).all()  # padding columns


def test_next_token_ce_at_the_last_layer_is_the_models_loss():
    """At the last layer the logit lens is the model: its CE is HF's own mean loss."""
    model = _tiny("gemma2")  # soft-capped
    ids = _ids(model, PUN)
    result = logitlens.analyze(model, PUN, layers=-1, positions="all", metrics=["next_token_ce"])
    with torch.no_grad():
        loss = model.module(torch.tensor([ids]), labels=torch.tensor([ids])).loss
    assert np.nanmean(result.next_token_ce[0, 0]) == pytest.approx(loss.item(), rel=1e-4)


def test_alternatives_must_match_targets_and_need_targets():
    model = _tiny("llama")
    with pytest.raises(InputError, match="shaped like targets"):
        logitlens.analyze(model, PROMPTS[:1], targets=[[" a", " b"]], alternatives=[[" c"]])
    with pytest.raises(InputError, match="'logit_diff' metric needs a target"):
        logitlens.analyze(model, PROMPTS[0], alternatives=" the")
    with pytest.raises(InputError, match="needs alternatives"):
        logitlens.analyze(model, PROMPTS[0], targets=" the", metrics=["logit_diff"])


def test_each_metric_computes_only_its_own_arrays():
    """Every registry entry, alone, yields exactly its arrays (plus the model's top-1)."""
    from logitlens.metrics import MODEL_TOP_IDS, REGISTRY

    model = _tiny("llama")
    for name, metric in REGISTRY.items():
        result = logitlens.analyze(
            model,
            PROMPTS[:2],
            positions="all",
            targets=" the" if "targets" in metric.needs else None,
            alternatives=" a" if "alternatives" in metric.needs else None,
            metrics=[name],
        )
        computed = {
            a for a in LensResult.DIMS if a != "positions" and getattr(result, a) is not None
        }
        expected = {array.name for array in metric.arrays}
        if "targets" in metric.needs:
            expected |= {"target_prob", "target_logit"}  # targets always add 'target'
        if "final" in metric.needs:
            expected.add(MODEL_TOP_IDS.name)
        assert computed == expected, name
        for array in metric.arrays:
            values = getattr(result, array.name)
            assert np.issubdtype(values.dtype, np.floating) == array.floating, array.name
            assert values.ndim == len(array.dims), array.name


# ----- (c) batched == one by one -----------------------------------------------------


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_batched_equals_one_by_one(model_type):
    model = _tiny(model_type)
    kwargs = {"metrics": ALL_METRICS, "targets": TARGETS, "k": 5, "include_embed": True}
    for positions in ("all", "last"):
        together = logitlens.analyze(model, PROMPTS, positions=positions, **kwargs)
        in_pairs = logitlens.analyze(model, PROMPTS, positions=positions, batch_size=2, **kwargs)
        _assert_results_close(together, in_pairs)
        for p, prompt in enumerate(PROMPTS):
            alone = logitlens.analyze(
                model, prompt, positions=positions, **{**kwargs, "targets": [TARGETS[p]]}
            )
            _assert_results_close(_select(together, p), alone)
    # With "last" there is one column per prompt, always filled.
    assert together.positions.shape == (len(PROMPTS), 1)
    assert together.positions[:, 0].tolist() == [len(ids) - 1 for ids in together.token_ids]


def test_padding_really_happens():
    """The prompts used above have different lengths, so the batch is left-padded."""
    model = _tiny("gpt2")
    lengths = {len(_ids(model, p)) for p in PROMPTS}
    assert len(lengths) == len(PROMPTS)


# ----- (d) NDIF's serialization round trip, in process ------------------------------


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "bloom"])
def test_remote_local_equals_local(model_type, wrap_tiny):
    local = _tiny(model_type)
    remote = wrap_tiny(model_type, remote="local")
    assert remote.remote == "local"
    for lens in ("logit", "raw"):
        expected = logitlens.analyze(local, PROMPTS, lens=lens, **EVERYTHING)
        got = logitlens.analyze(remote, PROMPTS, lens=lens, **EVERYTHING)
        _assert_results_close(got, expected, atol=1e-6)


def test_remote_attribute_switch(wrap_tiny):
    """Setting ``model.remote = "local"`` on a loaded model also goes through NDIF's path."""
    model = wrap_tiny("llama")
    kwargs = {"positions": [0, -1], "metrics": ALL_METRICS, "targets": " Paris"}
    expected = logitlens.analyze(model, PROMPTS[:2], **kwargs)
    model.remote = "local"
    got = logitlens.analyze(model, PROMPTS[:2], **kwargs)
    _assert_results_close(got, expected, atol=1e-6)


# ----- (e) chunking ------------------------------------------------------------------


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_chunking_does_not_change_numbers(model_type):
    model = _tiny(model_type)
    default = logitlens.analyze(model, PROMPTS, **EVERYTHING)
    for chunk_rows in (1, 7, 10_000):
        chunked = logitlens.analyze(model, PROMPTS, chunk_rows=chunk_rows, **EVERYTHING)
        _assert_results_close(chunked, default, atol=1e-6)


def test_default_block_fits_the_byte_budget_and_never_drops_below_the_row_floor():
    from logitlens.residuals import CHUNK_BYTES, CHUNK_ROWS, analysis_chunk_rows

    for vocab in (1, 1000, 49_152, 128_256, 262_144):
        rows = analysis_chunk_rows(vocab)
        assert rows >= CHUNK_ROWS
        if rows > CHUNK_ROWS:  # the most fp32 rows that fit in the budget
            assert rows * vocab * 4 <= CHUNK_BYTES < (rows + 1) * vocab * 4
    assert analysis_chunk_rows(49_152) == 682  # the bundled SmolLM2: a batch of 16 x 30 layers
    assert analysis_chunk_rows(262_144) == CHUNK_ROWS  # Gemma 3: 256 rows are already 256 MiB


@pytest.mark.bundled
def test_block_size_changes_no_bit_on_the_bundled_model(bundled):
    """One 360-row block (the default) and 256 + 104-row blocks give identical numbers."""
    kwargs = {"positions": "all", "targets": " current", "metrics": ["target", "topk", "kl"]}
    one = logitlens.analyze(bundled, PUN, **kwargs)
    split = logitlens.analyze(bundled, PUN, chunk_rows=256, **kwargs)
    assert one.target_prob.size == 30 * len(one.token_ids[0])
    for name in ("target_prob", "target_logit", "top_ids", "top_probs", "kl", "model_top_ids"):
        np.testing.assert_array_equal(getattr(one, name), getattr(split, name), err_msg=name)


def test_reduce_residuals_runs_locally_on_saved_residuals():
    """The reduce half, fed with residuals read outside any trace, gives analyze's numbers."""
    from logitlens.analysis import ReductionPlan, reduce_residuals
    from logitlens.residuals import residual_stream

    model = _tiny("gemma2")  # final norm and soft-cap
    ids = _ids(model, PUN)
    result = logitlens.analyze(model, [PUN], **{**EVERYTHING, "targets": [TARGETS[2]]})
    plan = ReductionPlan(
        layers=result.layers,
        metrics=frozenset(ALL_METRICS),
        k=result.k,
        chunk_rows=7,
        n_layers=model.n_layers,
    )
    stream = residual_stream(model, torch.tensor([ids]))[:, 0]  # [n_layers + 1, seq, d]
    saved = {"stacked": stream[[layer + 1 for layer in result.layers]], "final": stream[-1:]}
    targets = torch.tensor(result.target_ids)[:, None].expand(1, len(ids), -1)
    unembedding = logitlens.Unembedding(model.module, model.architecture, model.config)
    lens = logitlens.LogitLens()
    shape = (1, len(ids))
    out = reduce_residuals(unembedding, lens, plan, saved, shape, {"targets": targets})
    out = {key: value[0] if key == "model_top_ids" else value[:, 0] for key, value in out.items()}
    for name in ("target_prob", "target_logit", "entropy", "kl", "top_probs"):
        np.testing.assert_allclose(
            out[name].numpy(), getattr(result, name)[0], rtol=1e-4, atol=1e-5, err_msg=name
        )
    _assert_ranks_close(out["final_rank"].numpy(), result.final_rank[0], "final_rank")
    _assert_ranks_close(out["target_rank"].numpy(), result.target_rank[0], "target_rank")
    np.testing.assert_array_equal(out["model_top_ids"].numpy(), result.model_top_ids[0])


# ----- (f) layer and position selection ----------------------------------------------


@pytest.fixture(scope="module")
def deep():
    """A 5-layer tiny llama and its full result (all layers, all positions)."""
    model = _tiny("llama", num_hidden_layers=5)
    full = logitlens.analyze(
        model,
        PROMPTS,
        positions="all",
        include_embed=True,
        metrics=ALL_METRICS,
        targets=TARGETS,
        k=5,
    )
    assert full.layers == [EMBED, 0, 1, 2, 3, 4]
    return model, full


def _rows(full: LensResult, layers: list[int]) -> LensResult:
    """The rows of ``full`` for ``layers`` (an independent slicing of the arrays)."""
    index = [full.layers.index(layer) for layer in layers]
    kwargs = {}
    for name in LensResult.DIMS:
        value = getattr(full, name)
        if value is None or name == "positions":
            continue
        kwargs[name] = value if name == "model_top_ids" else value[:, index]
    return LensResult(
        model_name=full.model_name,
        lens=full.lens,
        prompts=full.prompts,
        tokens=full.tokens,
        token_ids=full.token_ids,
        layers=layers,
        positions=full.positions,
        k=full.k,
        target_ids=full.target_ids,
        target_tokens=full.target_tokens,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("layers", "include_embed", "expected"),
    [
        ([0, 2], False, [0, 2]),
        ([2, 0], False, [0, 2]),
        (3, False, [3]),
        (-1, False, [4]),
        ([-1, -5], False, [0, 4]),
        ([1, -4], False, [1]),  # the same layer twice
        ("1:3", False, [1, 2]),
        (":2", False, [0, 1]),
        ("3:", False, [3, 4]),
        ("-2:", False, [3, 4]),
        ("0,-1", False, [0, 4]),
        ("0, 2:4", False, [0, 2, 3]),
        ("embed,2", False, [EMBED, 2]),
        (["embed", 1], False, [EMBED, 1]),
        ([1], True, [EMBED, 1]),
        ("all", True, [EMBED, 0, 1, 2, 3, 4]),
        (None, False, [0, 1, 2, 3, 4]),
    ],
)
def test_layer_selection(deep, layers, include_embed, expected):
    model, full = deep
    result = logitlens.analyze(
        model,
        PROMPTS,
        layers=layers,
        include_embed=include_embed,
        positions="all",
        metrics=ALL_METRICS,
        targets=TARGETS,
        k=5,
    )
    assert result.layers == expected
    _assert_results_close(result, _rows(full, expected), atol=1e-6)


@pytest.mark.parametrize("positions", [[0, -1], [-1, 0], [2, -2, 0], 0, -1, "0,-1", [-2], "last"])
def test_position_selection(deep, positions):
    model, full = deep
    prompts = [PROMPTS[0], PROMPTS[2]]  # both have at least 3 tokens
    targets = [TARGETS[0], TARGETS[2]]
    result = logitlens.analyze(
        model,
        prompts,
        positions=positions,
        include_embed=True,
        metrics=ALL_METRICS,
        targets=targets,
        k=5,
    )
    if positions == "last":
        wanted = [-1]
    elif isinstance(positions, int):
        wanted = [positions]
    elif isinstance(positions, str):
        wanted = [int(p) for p in positions.split(",")]
    else:
        wanted = positions
    for p, full_p in enumerate([0, 2]):
        n = len(full.token_ids[full_p])
        expected_positions = [w % n for w in wanted]
        assert result.positions[p].tolist() == expected_positions
        for column, position in enumerate(expected_positions):
            full_column = list(full.positions[full_p]).index(position)
            for name in (
                "top_ids",
                "top_probs",
                "target_prob",
                "target_rank",
                "entropy",
                "kl",
                "final_rank",
            ):
                np.testing.assert_allclose(
                    getattr(result, name)[p, :, column],
                    getattr(full, name)[full_p, :, full_column],
                    rtol=1e-4,
                    atol=1e-6,
                    err_msg=f"{name} prompt {p} position {position}",
                )
            # column() finds it by positive and by negative index.
            assert result.column(p, position) == column
            assert result.column(p, position - n) == column


def test_ragged_positions_mark_missing_columns(deep):
    model, _ = deep
    result = logitlens.analyze(
        model, PROMPTS, positions="all", metrics=ALL_METRICS, targets=TARGETS, k=3
    )
    lengths = [len(ids) for ids in result.token_ids]
    assert result.positions.shape == (3, max(lengths))
    for p, n in enumerate(lengths):
        assert (result.positions[p, n:] == -1).all()
        assert np.isnan(result.top_probs[p, :, n:]).all()
        assert np.isnan(result.target_prob[p, :, n:]).all()
        assert (result.top_ids[p, :, n:] == -1).all()
        assert (result.target_rank[p, :, n:] == -1).all()
        assert (result.final_rank[p, :, n:] == -1).all()
        assert not np.isnan(result.top_probs[p, :, :n]).any()


def test_metric_subsets_only_compute_what_was_asked():
    model = _tiny("llama")
    result = logitlens.analyze(model, PROMPTS[0], metrics=["entropy"])
    assert result.entropy is not None
    for name in ("top_ids", "top_probs", "target_prob", "kl", "final_rank", "model_top_ids"):
        assert getattr(result, name) is None, name
    assert result.k == 0
    # Default: top-k only, plus target statistics when targets are given.
    default = logitlens.analyze(model, PROMPTS[0], targets=" Paris")
    assert default.top_ids is not None and default.target_prob is not None
    assert default.entropy is None and default.kl is None
    assert default.top_ids.shape == (1, model.n_layers, 1, 10)


def test_results_are_reproducible():
    model = _tiny("gpt2")
    kwargs = {"positions": "all", "metrics": ALL_METRICS, "targets": TARGETS}
    _assert_results_close(
        logitlens.analyze(model, PROMPTS, **kwargs),
        logitlens.analyze(model, PROMPTS, **kwargs),
        atol=0,
    )


# ----- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": ""}, r"Prompt 0 is empty"),
        ({"prompts": "   \n\t"}, r"Prompt 0 is empty"),
        ({"prompts": ["fine", ""]}, r"Prompt 1 is empty"),
        ({"prompts": []}, r"No prompts given"),
        ({"layers": 2}, r"Layer 2 is out of range: this model has 2 layers"),
        ({"layers": -3}, r"Layer -3 is out of range"),
        ({"layers": [0, 7]}, r"Layer 7 is out of range.*0\.\.1"),
        ({"layers": "5:9"}, r"No layers selected"),
        ({"layers": "a:b"}, r"Bad layer range 'a:b'"),
        ({"layers": "one"}, r"Bad layer 'one'"),
        ({"positions": 6}, r"Position 6 is out of range for a prompt of 6 tokens"),
        ({"positions": [0, -7]}, r"Position -7 is out of range.*0\.\.5"),
        ({"positions": []}, r"No positions selected"),
        ({"positions": "x"}, r"Bad position 'x'"),
        ({"k": 0}, r"k must be between 1 and the vocabulary size"),
        ({"k": -1}, r"k must be between 1"),
        ({"lens": "nope"}, r"Unknown lens 'nope'.*logit, raw, tuned"),
        ({"lens": "tuned"}, r"tuned_path"),
        ({"metrics": ["topk", "bogus"]}, r"Unknown metric\(s\) \['bogus'\].*entropy"),
        ({"metrics": ["target"]}, r"'target' metric needs a target"),
        ({"targets": [" Paris", " the"]}, r"Got 2 targets for 1 prompts"),
        ({"targets": [[" Paris"], []], "prompts": ["a b", "c d"]}, r"same number"),
        ({"targets": ""}, r"target is empty"),
        ({"batch_size": 0}, r"batch_size must be at least 1"),
    ],
)
def test_bad_input_is_a_clear_input_error(kwargs, message):
    model = _tiny("llama")
    assert model.n_layers == 2
    assert len(_ids(model, PROMPTS[0])) == 6
    kwargs = {"prompts": PROMPTS[0], **kwargs}
    with pytest.raises(InputError, match=message):
        logitlens.analyze(model, **kwargs)


def test_k_larger_than_the_vocabulary():
    model = _tiny("llama")
    vocab = model.vocab_size
    with pytest.raises(InputError, match=rf"vocabulary size \({vocab}\), got {vocab + 1}"):
        logitlens.analyze(model, PROMPTS[0], k=vocab + 1)
    full = logitlens.analyze(model, PROMPTS[0], k=vocab)  # the whole vocabulary is fine
    assert sorted(full.top_ids[0, -1, 0].tolist()) == list(range(vocab))
    assert full.top_probs[0, -1, 0].sum() == pytest.approx(1.0, abs=1e-4)


def test_prompt_longer_than_the_context():
    model = _tiny("llama", max_position_embeddings=8)
    assert model.context_length == 8
    ok = "The capital"
    assert len(_ids(model, ok)) <= 8
    logitlens.analyze(model, ok)
    long = "Why do electricians make good swimmers? Because they know the current."
    n = len(_ids(model, long))
    assert n > 8
    with pytest.raises(
        InputError, match=rf"Prompt 1 is {n} tokens, longer than the model's context of 8"
    ):
        logitlens.analyze(model, [ok, long])


@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_prompt_of_exactly_the_context_length_is_accepted(model_type):
    prompt = "Why do electricians make good swimmers?"
    n = len(_ids(_tiny(model_type), prompt))
    field = "n_positions" if model_type == "gpt2" else "max_position_embeddings"
    exact = _tiny(model_type, **{field: n})
    assert exact.context_length == n
    result = logitlens.analyze(exact, prompt, positions="all", metrics=["kl", "final_rank"])
    assert (result.final_rank[0, -1] == 1).all()
    short = _tiny(model_type, **{field: n - 1})
    with pytest.raises(InputError, match=rf"Prompt 0 is {n} tokens.*context of {n - 1} tokens"):
        logitlens.analyze(short, prompt)


def test_input_errors_are_value_errors():
    """Callers catching ValueError also catch InputError."""
    model = _tiny("llama")
    with pytest.raises(ValueError):
        logitlens.analyze(model, "")
    assert issubclass(InputError, logitlens.LogitLensError)


# ----- the bundled SmolLM2-135M --------------------------------------------------------


@pytest.mark.bundled
def test_bundled_last_layer_is_the_models_output(bundled):
    prompt = "The capital of France is"
    ids = _ids(bundled, prompt)
    result = logitlens.analyze(
        bundled, prompt, layers=-1, positions="all", k=10, metrics=["topk", "kl", "final_rank"]
    )
    probs = _model_logits(bundled.module, ids).softmax(-1)
    for position in range(len(ids)):
        _check_topk(
            result.top_ids[0, 0, position],
            result.top_probs[0, 0, position],
            probs[position],
            f"bundled position {position}",
        )
    assert (np.abs(result.kl[0, 0]) < 1e-4).all()
    assert (result.final_rank[0, 0] == 1).all()


@pytest.mark.bundled
def test_bundled_layers_match_the_reference(bundled):
    result = logitlens.analyze(
        bundled,
        PUN,
        layers=[0, 7, 15, -1],
        include_embed=True,
        positions=[0, 5, -1],
        k=10,
        targets=[[" current", " water"]],
        metrics=ALL_METRICS,
    )
    assert result.layers == [EMBED, 0, 7, 15, bundled.n_layers - 1]
    targets = [_token_id(bundled, " current"), _token_id(bundled, " water")]
    _check_against_reference(result, bundled.module, 0, "logit", targets)
    raw = logitlens.analyze(
        bundled,
        PUN,
        lens="raw",
        layers=[3, 20],
        positions="last",
        k=5,
        targets=[[" current"]],
        metrics=ALL_METRICS,
    )
    _check_against_reference(raw, bundled.module, 0, "raw", targets[:1])


@pytest.mark.bundled
def test_bundled_knows_the_capital_of_france(bundled):
    prompt = "The capital of France is"
    paris = _token_id(bundled, " Paris")
    own = _model_logits(bundled.module, _ids(bundled, prompt))[-1]
    assert own.argmax().item() == paris
    result = logitlens.analyze(bundled, prompt, targets=" Paris", k=5)
    assert result.target_ids == [[paris]]
    assert result.top_ids[0, -1, 0, 0] == paris
    assert result.top_tokens()[0].token == " Paris"
    assert result.target_rank[0, -1, 0, 0] == 1
    assert result.first_layer_top1() is not None
    assert result.first_layer_top1() <= bundled.n_layers - 1


@pytest.mark.bundled
def test_bundled_remote_local_equals_local(bundled):
    kwargs = {
        "positions": "all",
        "metrics": ALL_METRICS,
        "targets": " current",
        "include_embed": True,
        "layers": "0,10,20,-1",
    }
    expected = logitlens.analyze(bundled, PUN, **kwargs)
    bundled.remote = "local"
    try:
        got = logitlens.analyze(bundled, PUN, **kwargs)
    finally:
        bundled.remote = False
    _assert_results_close(got, expected, atol=1e-6)


@pytest.mark.bundled
def test_bundled_batched_equals_alone(bundled):
    prompts = [PUN, "The capital of France is", "Hello"]
    targets = [" current", " Paris", " world"]
    kwargs = {"positions": "all", "metrics": ALL_METRICS, "layers": "0,10,20,-1", "k": 5}
    together = logitlens.analyze(bundled, prompts, targets=targets, **kwargs)
    for p, prompt in enumerate(prompts):
        alone = logitlens.analyze(bundled, prompt, targets=targets[p], **kwargs)
        _assert_results_close(_select(together, p), alone)


def test_reference_helpers_can_fail():
    """The checks above are not vacuous: a perturbed result is caught."""
    model = _tiny("llama")
    result = logitlens.analyze(
        model, PROMPTS[0], positions="all", metrics=ALL_METRICS, targets=[TARGETS[0]], k=3
    )
    targets = [_token_id(model, t) for t in TARGETS[0]]
    _check_against_reference(result, model.module, 0, "logit", targets)
    for name, delta in [("target_prob", 1e-3), ("entropy", 1e-2), ("kl", 1e-2)]:
        broken = LensResult(**{**result.__dict__, name: getattr(result, name) + delta})
        with pytest.raises(AssertionError):
            _check_against_reference(broken, model.module, 0, "logit", targets)
    with pytest.raises(AssertionError):  # the raw lens is not the logit lens
        _check_against_reference(result, model.module, 0, "raw", targets)
    assert math.isfinite(float(result.entropy.sum()))
