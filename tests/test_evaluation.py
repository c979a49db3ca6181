"""Tests for logitlens.evaluation: residual reading, per-layer KL / CE / perplexity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference
import torch
from tiny_models import TINY_MODEL_TYPES

from logitlens.errors import InputError
from logitlens.evaluation import evaluate_lenses
from logitlens.lenses import TunedLens
from logitlens.pictures.plots import plot_evaluation, save_figure
from logitlens.residuals import residual_stream
from logitlens.training.corpus import bible_documents

TEXTS = bible_documents()[:3]


@pytest.mark.parametrize("model_type", TINY_MODEL_TYPES)
def test_residual_stream_matches_the_reference_hooks(wrap_tiny, model_type):
    model = wrap_tiny(model_type)
    ids = model.tokenizer("The river bank is wet", return_tensors="pt")["input_ids"]
    residuals = residual_stream(model, ids)
    assert residuals.shape[:3] == (model.n_layers + 1, 1, ids.shape[1])
    torch.testing.assert_close(residuals[0], reference.embed_residual(model.module, ids))
    torch.testing.assert_close(residuals[1:], reference.residuals(model.module, ids))


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "opt-project_out", "gemma2"])
def test_identity_tuned_lens_evaluates_exactly_like_the_logit_lens(wrap_tiny, model_type):
    model = wrap_tiny(model_type)
    evaluation = evaluate_lenses(
        model, ["raw", "logit", TunedLens.identity(model)], TEXTS, seq_len=16, max_tokens=64
    )
    assert evaluation.kl["tuned"] == evaluation.kl["logit"]
    assert evaluation.cross_entropy["tuned"] == evaluation.cross_entropy["logit"]
    assert evaluation.kl["logit"][-1] == pytest.approx(0, abs=1e-6)
    assert evaluation.kl["raw"] != evaluation.kl["logit"]
    assert evaluation.tokens == 4 * 15  # 4 sequences, the last position of each left out


def test_metrics_match_a_direct_computation(wrap_tiny):
    model = wrap_tiny("llama")
    ids = torch.tensor([[5, 9, 14, 20, 7, 3]])
    evaluation = evaluate_lenses(model, ["logit"], ids, include_embed=False, max_tokens=None)
    with torch.no_grad():
        logprobs = model.module(ids).logits.log_softmax(-1)[0, :-1]
    cross_entropy = -logprobs.gather(-1, ids[0, 1:, None]).mean()
    assert evaluation.cross_entropy["logit"][-1] == pytest.approx(cross_entropy.item(), rel=1e-5)
    assert evaluation.perplexity("logit")[-1] == pytest.approx(math.exp(cross_entropy.item()))


def test_table_and_plot(wrap_tiny, tmp_path):
    model = wrap_tiny("gpt2")
    evaluation = evaluate_lenses(model, ["raw", "logit"], TEXTS, seq_len=16, max_tokens=32)
    frame = evaluation.to_dataframe()
    assert list(frame.columns) == ["lens", "layer", "kl", "cross_entropy", "perplexity"]
    assert len(frame) == 2 * (model.n_layers + 1)
    wide = evaluation.wide("kl")
    assert list(wide.columns) == ["raw", "logit"] and wide.index[0] == "embed"
    figure = plot_evaluation(evaluation)
    kl_axis, ppl_axis = figure.axes
    for axis, values in ((kl_axis, evaluation.kl), (ppl_axis, None)):
        lines = {line.get_label(): line.get_ydata() for line in axis.get_lines()}
        assert set(lines) == {"raw", "logit"}
        for lens, ydata in lines.items():
            expected = values[lens] if values else evaluation.perplexity(lens)
            np.testing.assert_allclose(ydata, expected)
    save_figure(figure, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes().startswith(b"\x89PNG")


def test_too_little_text_is_a_clear_error(wrap_tiny):
    with pytest.raises(InputError, match="shorter than one sequence"):
        evaluate_lenses(wrap_tiny("llama"), ["logit"], ["tiny"], seq_len=64)
