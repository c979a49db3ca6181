"""LensResult: lookups, the questions users ask, and export (JSON, DataFrame)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import logitlens
from logitlens import EMBED, InputError, LensResult

ALL_METRICS = ["topk", "target", "target_rank", "entropy", "kl", "final_rank"]
ARRAY_FIELDS = [name for name in LensResult.DIMS]


# ----- a synthetic result whose values the tests control --------------------------


def _synthetic(seed: int = 0) -> LensResult:
    """Two prompts (3 and 5 tokens), embed + 4 layers, all positions, 2 targets."""
    rng = np.random.default_rng(seed)
    lengths = [3, 5]
    layers = [EMBED, 0, 1, 2, 3]
    n_layers, n_cols, n_targets, k = len(layers), max(lengths), 2, 3
    positions = np.full((2, n_cols), -1, dtype=np.int64)
    for p, length in enumerate(lengths):
        positions[p, :length] = np.arange(length)
    valid = (positions >= 0)[:, None, :, None]

    target_prob = rng.uniform(0, 0.3, (2, n_layers, n_cols, n_targets))
    target_prob[0, 2, 2, 0] = 0.5  # prompt 0, layer 1, last position, target 0
    target_prob[0, 4, 2, 0] = 0.9
    target_prob[1, :, 4, 1] = 0.05  # never above 0.1 at the last position
    target_rank = rng.integers(2, 50, (2, n_layers, n_cols, n_targets))
    target_rank[0, 3, 2, 0] = 1  # prompt 0, layer 2, last position
    target_rank[1, 0, 4, 0] = 1  # prompt 1, embed, last position
    top_ids = rng.integers(0, 20, (2, n_layers, n_cols, k))
    top_probs = np.sort(rng.uniform(0, 0.3, (2, n_layers, n_cols, k)), axis=-1)[..., ::-1]
    return LensResult(
        model_name="synthetic",
        lens="logit",
        prompts=["a b c", "a b c d e"],
        tokens=[[f"t{i}" for i in range(n)] for n in lengths],
        token_ids=[list(range(10, 10 + n)) for n in lengths],
        layers=layers,
        positions=positions,
        k=k,
        top_ids=np.where(valid, top_ids, -1),
        top_probs=np.where(valid, top_probs, np.nan),
        target_ids=[[5, 6], [7, 8]],
        target_tokens=[["x", "y"], ["z", "w"]],
        target_prob=np.where(valid, target_prob, np.nan),
        target_logit=np.where(valid, rng.normal(size=target_prob.shape), np.nan),
        target_rank=np.where(valid, target_rank, -1),
        entropy=np.where(valid[..., 0], rng.uniform(0, 5, (2, n_layers, n_cols)), np.nan),
        vocab={i: f"tok{i}" for i in range(20)},
    )


def _column(result: LensResult, prompt: int, position: int) -> int:
    length = len(result.token_ids[prompt])
    wanted = position % length
    for column, value in enumerate(result.positions[prompt]):
        if value == wanted:
            return column
    raise AssertionError("position not in result")


def _first_above_loop(result, threshold, prompt, position, target):
    column = _column(result, prompt, position)
    for li, layer in enumerate(result.layers):
        value = result.target_prob[prompt, li, column, target]
        if not math.isnan(value) and value > threshold:
            return layer
    return None


def _first_top1_loop(result, prompt, position, target):
    column = _column(result, prompt, position)
    for li, layer in enumerate(result.layers):
        if result.target_rank[prompt, li, column, target] == 1:
            return layer
    return None


def test_first_layer_above_known_cases():
    result = _synthetic()
    assert result.first_layer_above(0.4) == 1
    assert result.first_layer_above(0.6) == 3
    assert result.first_layer_above(0.5) == 3  # "exceeds": 0.5 itself does not count
    assert result.first_layer_above(0.95) is None
    assert result.first_layer_above(0.1, prompt=1, target=1) is None


def test_first_layer_top1_known_cases():
    result = _synthetic()
    assert result.first_layer_top1() == 2
    assert result.first_layer_top1(prompt=1) == EMBED
    assert result.first_layer_top1(prompt=1, target=1) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_layer_questions_match_a_loop(seed):
    result = _synthetic(seed)
    for prompt in range(2):
        for position in range(-len(result.token_ids[prompt]), len(result.token_ids[prompt])):
            for target in range(2):
                for threshold in (0.0, 0.1, 0.25, 0.45, 0.99):
                    assert result.first_layer_above(
                        threshold, prompt, position, target
                    ) == _first_above_loop(result, threshold, prompt, position, target)
                assert result.first_layer_top1(prompt, position, target) == _first_top1_loop(
                    result, prompt, position, target
                )


def test_trajectory_reads_one_metric_across_layers():
    result = _synthetic()
    for prompt, position in [(0, -1), (0, 0), (1, 3), (1, -2)]:
        column = _column(result, prompt, position)
        np.testing.assert_array_equal(
            result.trajectory("target_prob", prompt, position, target=1),
            result.target_prob[prompt, :, column, 1],
        )
        np.testing.assert_array_equal(
            result.trajectory("entropy", prompt, position),
            result.entropy[prompt, :, column],
        )
        assert result.trajectory("target_rank", prompt, position).shape == (len(result.layers),)


def test_require_missing_metric_names_the_flag():
    result = _synthetic()
    with pytest.raises(InputError, match=r"'kl'.*metrics including 'kl'"):
        result.require("kl")
    with pytest.raises(InputError, match="final_rank"):
        result.trajectory("final_rank")
    no_targets = dataclasses.replace(result, target_prob=None, target_rank=None)
    with pytest.raises(InputError, match=r"targets="):
        no_targets.first_layer_above(0.1)
    with pytest.raises(InputError, match=r"--target"):
        no_targets.first_layer_top1()
    no_topk = dataclasses.replace(result, top_ids=None, top_probs=None)
    with pytest.raises(InputError, match="topk"):
        no_topk.top_tokens()


def test_column_lookup_and_errors():
    result = _synthetic()
    assert result.column(0, -1) == 2
    assert result.column(1, -1) == 4
    assert result.column(1, 0) == 0
    with pytest.raises(InputError, match=r"Position 4 of prompt 0 was not analysed"):
        result.column(0, 4)  # prompt 0 has only 3 tokens
    with pytest.raises(InputError, match="not analysed"):
        result.column(0, -4)
    with pytest.raises(InputError, match="Prompt index 2 out of range"):
        result.column(2, 0)
    with pytest.raises(InputError, match="Layer 7 is not in this result"):
        result.layer_index(7)
    assert result.layer_index("embed") == 0
    assert result.layer_index(3) == 4


def test_top_tokens_and_topk_table_match_arrays():
    result = _synthetic()
    for prompt, position in [(0, -1), (1, 1)]:
        column = _column(result, prompt, position)
        table = result.topk_table(prompt, position)
        assert list(table) == ["embed", "0", "1", "2", "3"]
        for li, label in enumerate(table):
            rows = table[label]
            assert [r.token_id for r in rows] == list(result.top_ids[prompt, li, column])
            assert [r.prob for r in rows] == pytest.approx(
                list(result.top_probs[prompt, li, column])
            )
            assert [r.token for r in rows] == [
                f"tok{i}" for i in result.top_ids[prompt, li, column]
            ]
        # layer=-1 means the last layer of the result, "embed" the embedding row.
        last = result.top_tokens(prompt, -1, position)
        assert [r.token_id for r in last] == list(result.top_ids[prompt, -1, column])
        embed = result.top_tokens(prompt, "embed", position)
        assert [r.token_id for r in embed] == list(result.top_ids[prompt, 0, column])
    assert result.token_text(999) == "<999>"


# ----- results of real analyses ---------------------------------------------------


@pytest.fixture(scope="module")
def analysed():
    """A tiny-llama result with every metric, two targets, ragged prompts."""
    from tiny_models import tiny_model

    hf_model, tokenizer = tiny_model("llama")
    model = logitlens.load_model(hf_model, tokenizer=tokenizer)
    prompts = ["The capital of France is", "Hi", "Why do electricians make good swimmers?"]
    return logitlens.analyze(
        model,
        prompts,
        positions="all",
        include_embed=True,
        metrics=ALL_METRICS,
        targets=[[" Paris", " current"]] * len(prompts),
        k=4,
    )


def _assert_results_equal(a: LensResult, b: LensResult) -> None:
    for item in dataclasses.fields(LensResult):
        left, right = getattr(a, item.name), getattr(b, item.name)
        if isinstance(left, np.ndarray) or isinstance(right, np.ndarray):
            assert left is not None and right is not None, item.name
            assert left.shape == right.shape, item.name
            np.testing.assert_array_equal(left, right, err_msg=item.name)
            assert np.issubdtype(left.dtype, np.floating) == np.issubdtype(
                right.dtype, np.floating
            ), item.name
        else:
            assert left == right, item.name


def test_json_round_trip(analysed, tmp_path):
    assert np.isnan(analysed.top_probs).any(), "ragged prompts should leave NaN columns"
    text = analysed.to_json()
    json.loads(text)  # valid JSON: NaN written as null, not as a bare NaN
    assert "NaN" not in text
    _assert_results_equal(LensResult.from_json(text), analysed)

    path = tmp_path / "result.json"
    analysed.to_json(path)
    _assert_results_equal(LensResult.from_json(path), analysed)
    _assert_results_equal(LensResult.from_json(str(path)), analysed)


def test_json_round_trip_keeps_nan_exactly_where_it_was(analysed):
    again = LensResult.from_json(analysed.to_json())
    for name in ("top_probs", "target_prob", "target_logit", "entropy", "kl"):
        np.testing.assert_array_equal(
            np.isnan(getattr(again, name)), np.isnan(getattr(analysed, name))
        )
    np.testing.assert_array_equal(again.positions, analysed.positions)
    assert (again.positions[1] == -1).sum() == (analysed.positions[1] == -1).sum() > 0


def test_json_round_trip_of_a_partial_result(analysed):
    partial = dataclasses.replace(analysed, kl=None, entropy=None, final_rank=None)
    again = LensResult.from_json(partial.to_json())
    assert again.kl is None and again.entropy is None and again.final_rank is None
    _assert_results_equal(again, partial)


def test_questions_on_a_real_result_match_loops(analysed):
    for prompt in range(len(analysed.prompts)):
        for target in range(2):
            for threshold in (0.001, 0.01, 0.05):
                assert analysed.first_layer_above(
                    threshold, prompt, -1, target
                ) == _first_above_loop(analysed, threshold, prompt, -1, target)
            assert analysed.first_layer_top1(prompt, -1, target) == _first_top1_loop(
                analysed, prompt, -1, target
            )


def test_to_dataframe_rows_and_values(analysed):
    frame = analysed.to_dataframe()
    n_targets = 2
    valid_positions = sum(int((row >= 0).sum()) for row in analysed.positions)
    assert len(frame) == len(analysed.layers) * valid_positions * n_targets
    assert valid_positions == sum(len(ids) for ids in analysed.token_ids)

    expected_columns = {
        "prompt_index",
        "prompt",
        "layer",
        "position",
        "input_token",
        "top1",
        "top1_prob",
        "topk",
        "target",
        "target_prob",
        "target_logit",
        "target_rank",
        "entropy",
        "kl",
        "final_rank",
    }
    assert expected_columns <= set(frame.columns)
    assert not frame["target_prob"].isna().any()

    labels = analysed.layer_labels
    for row in frame.itertuples(index=False):
        p = row.prompt_index
        li = labels.index(row.layer)
        column = _column(analysed, p, row.position)
        t = analysed.target_tokens[p].index(row.target)
        assert row.prompt == analysed.prompts[p]
        assert row.input_token == analysed.tokens[p][row.position]
        assert row.target_prob == pytest.approx(analysed.target_prob[p, li, column, t])
        assert row.target_logit == pytest.approx(analysed.target_logit[p, li, column, t])
        assert row.target_rank == analysed.target_rank[p, li, column, t]
        assert row.entropy == pytest.approx(analysed.entropy[p, li, column])
        assert row.kl == pytest.approx(analysed.kl[p, li, column])
        assert row.final_rank == analysed.final_rank[p, li, column]
        assert row.top1 == analysed.vocab[int(analysed.top_ids[p, li, column, 0])]
        assert row.top1_prob == pytest.approx(analysed.top_probs[p, li, column, 0])
        assert row.topk == [analysed.vocab[int(i)] for i in analysed.top_ids[p, li, column]]

    # Every (prompt, layer, position, target) appears exactly once.
    keys = frame[["prompt_index", "layer", "position", "target"]]
    assert not keys.duplicated().any()


def test_to_dataframe_without_targets(analysed):
    plain = dataclasses.replace(
        analysed,
        target_ids=[[] for _ in analysed.prompts],
        target_tokens=[[] for _ in analysed.prompts],
        target_prob=None,
        target_logit=None,
        target_rank=None,
    )
    frame = plain.to_dataframe()
    valid_positions = sum(len(ids) for ids in analysed.token_ids)
    assert len(frame) == len(analysed.layers) * valid_positions
    assert "target_prob" not in frame.columns


def test_vocab_covers_every_id_in_the_arrays(analysed):
    ids = set(np.unique(analysed.top_ids).tolist()) | set(
        np.unique(analysed.model_top_ids).tolist()
    )
    ids.discard(-1)
    ids |= {i for row in analysed.target_ids for i in row}
    assert ids <= set(analysed.vocab)


def test_require_and_column_on_a_real_result():
    from tiny_models import tiny_model

    hf_model, tokenizer = tiny_model("gpt2")
    model = logitlens.load_model(hf_model, tokenizer=tokenizer)
    result = logitlens.analyze(model, "The capital of France is", metrics=["topk"])
    with pytest.raises(InputError, match="metrics including 'entropy'"):
        result.require("entropy")
    with pytest.raises(InputError, match=r"targets=\.\.\."):
        result.require("target_prob")
    with pytest.raises(InputError, match="metrics including 'kl' or 'final_rank'"):
        result.require("model_top_ids")
    n = len(result.token_ids[0])
    assert result.column(0, -1) == 0
    assert result.column(0, n - 1) == 0
    with pytest.raises(InputError, match=r"has positions \[" + str(n - 1) + r"\]"):
        result.column(0, 0)
    with pytest.raises(InputError, match="positions='all'"):
        result.top_tokens(0, -1, 1)


def test_logit_diff_and_next_token_ce_travel_through_json_and_the_dataframe():
    from tiny_models import tiny_model

    hf_model, tokenizer = tiny_model("llama")
    model = logitlens.load_model(hf_model, tokenizer=tokenizer)
    result = logitlens.analyze(
        model,
        ["The capital of France is", "Hi"],
        positions="all",
        targets=[[" Paris", " the"], [" the", " France"]],
        alternatives=[[" France", " a"], [" a", " Paris"]],
        metrics=["next_token_ce"],
    )
    back = LensResult.from_json(result.to_json())
    for name in ("logit_diff", "next_token_ce", "target_prob"):
        np.testing.assert_allclose(getattr(back, name), getattr(result, name), rtol=1e-6)
    assert (
        back.alternative_tokens
        == result.alternative_tokens
        == [[" France", " a"], [" a", " Paris"]]
    )
    frame = result.to_dataframe()
    row = frame[(frame.prompt_index == 0) & (frame.layer == "1") & (frame.position == 2)]
    assert list(row.alternative) == [" France", " a"]
    assert list(row.logit_diff) == pytest.approx(result.logit_diff[0, 1, 2].tolist())
    assert row.next_token_ce.iloc[0] == pytest.approx(float(result.next_token_ce[0, 1, 2]))
    joined = LensResult.concat([result.subset([1]), result.subset([0])])
    assert joined.alternative_ids == [result.alternative_ids[1], result.alternative_ids[0]]
