"""Tests for logitlens.evaluation: per-layer KL / top-1 / CE / perplexity, pass@k, scoreboard."""

from __future__ import annotations

import math

import numpy as np
import pytest
import reference
import torch
from tiny_models import TINY_MODEL_TYPES

from logitlens.errors import InputError
from logitlens.evaluation import evaluate_lenses, pass_at_k, scoreboard
from logitlens.lenses import JacobianLens, TunedLens
from logitlens.pictures.plots import plot_evaluation, plot_scoreboard, save_figure
from logitlens.residuals import residual_stream
from logitlens.studies.dataset import StudyItem
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
    assert evaluation.top1_agreement["tuned"] == evaluation.top1_agreement["logit"]
    assert evaluation.top1_agreement["logit"][-1] == 1.0
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
    evaluation = evaluate_lenses(model, ["raw"], ids, include_embed=False, max_tokens=None)
    with torch.no_grad():
        hidden = reference.residuals(model.module, ids)[0, 0, :-1]
        raw_top = model.module.lm_head(hidden).argmax(-1)
    agreement = (raw_top == logprobs.argmax(-1)).float().mean().item()
    assert evaluation.top1_agreement["raw"][0] == pytest.approx(agreement)


def test_table_and_plot(wrap_tiny, tmp_path):
    model = wrap_tiny("gpt2")
    evaluation = evaluate_lenses(model, ["raw", "logit"], TEXTS, seq_len=16, max_tokens=32)
    frame = evaluation.to_dataframe()
    assert list(frame.columns) == [
        "lens",
        "layer",
        "kl",
        "top1_agreement",
        "cross_entropy",
        "perplexity",
    ]
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


ITEMS = [
    StudyItem("f1", "fact", "The capital of France is", " Paris"),
    StudyItem("f2", "fact", "Paris is a city in", " France"),
    StudyItem(
        "p1", "pun", "Why do electricians make good swimmers? Because they know the", " current"
    ),
]


def test_pass_at_k_matches_an_independent_count(wrap_tiny):
    model = wrap_tiny("gpt2")
    scored = pass_at_k(model, {"logit": "logit", "raw": "raw"}, ITEMS, ks=(1, 5, 50))
    assert scored.categories == {"all": 3, "fact": 2, "pun": 1}
    assert scored.layers == [-1, 0, 1]
    hf = model.module
    for category, members in (("all", ITEMS), ("fact", ITEMS[:2]), ("pun", ITEMS[2:])):
        for k in (1, 5, 50):
            hits = np.zeros(3)
            for item in members:
                ids = model.tokenizer(item.prompt, return_tensors="pt")["input_ids"]
                target = model.tokenizer(item.target, add_special_tokens=False)["input_ids"][0]
                with torch.no_grad():
                    hidden = [reference.embed_residual(hf, ids), *reference.residuals(hf, ids)]
                    for row, h in enumerate(hidden):
                        logits = hf.lm_head(reference.final_norm(hf)(h[0, -1]))
                        hits[row] += (logits > logits[target]).sum().item() < k
            expected = hits / len(members)
            np.testing.assert_allclose(scored.values["logit"][category][k], expected)
    assert scored.values["logit"]["all"][50][-1] >= scored.values["logit"]["all"][1][-1]


def test_scoreboard_table_plot_and_json(wrap_tiny, tmp_path):
    model = wrap_tiny("llama")
    jacobian = JacobianLens.identity(model)
    board = scoreboard(
        model,
        ["raw", "logit", jacobian, TunedLens.identity(model), TunedLens.identity(model)],
        TEXTS,
        ITEMS,
        ks=(1, 10),
        seq_len=16,
        max_tokens=32,
    )
    assert board.evaluation.lenses == ["raw", "logit", "jacobian", "tuned", "tuned-2"]
    assert board.evaluation.kl["jacobian"] == board.evaluation.kl["logit"]
    assert board.pass_at_k.values["jacobian"] == board.pass_at_k.values["logit"]
    payload = board.to_dict()
    assert payload["lenses"] == board.evaluation.lenses and payload["pass_at_k"]["ks"] == [1, 10]
    summary = payload["summary"]["logit"]
    assert set(summary) == {"kl", "top1_agreement", "perplexity", "pass@1", "pass@10"}
    assert summary["kl"] == pytest.approx(board.evaluation.kl["logit"][1])  # only layer 0
    figure = plot_scoreboard(board)
    assert len(figure.axes) == 4
    lines = {line.get_label(): line.get_ydata() for line in figure.axes[1].get_lines()}
    np.testing.assert_allclose(lines["raw"], board.evaluation.top1_agreement["raw"])
    save_figure(figure, tmp_path / "board.png")
    assert (tmp_path / "board.png").read_bytes().startswith(b"\x89PNG")


def test_cli_lens_eval_import_and_jlens_fit(tmp_path):
    """`lens eval`, `lens import`, `jlens fit`, `jlens merge` on a tiny model folder."""
    import json

    from tiny_models import tiny_model
    from typer.testing import CliRunner

    from logitlens.cli import app

    hf_model, tokenizer = tiny_model("llama")
    model_dir = tmp_path / "tiny"
    hf_model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (tmp_path / "texts").mkdir()
    for index, document in enumerate(bible_documents()[:40]):
        (tmp_path / "texts" / f"{index}.txt").write_text(document)
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(item.to_json()) for item in ITEMS))
    runner = CliRunner()
    common = ["--model", str(model_dir), "--corpus", str(tmp_path / "texts")]
    fits = []
    for name, n_texts in (("a", "2"), ("b", "1")):
        fitted = runner.invoke(
            app,
            [
                "jlens",
                "fit",
                *common,
                "-o",
                str(tmp_path / f"{name}.safetensors"),
                "--n-texts",
                n_texts,
                "--seq-len",
                "12",
                "--skip-first",
                "4",
            ],
        )
        assert fitted.exit_code == 0, fitted.output
        fits.append(str(tmp_path / f"{name}.safetensors"))
    merged = runner.invoke(app, ["jlens", "merge", *fits, "--out", str(tmp_path / "j.safetensors")])
    assert merged.exit_code == 0 and "3 prompts" in merged.output, merged.output
    torch.save({"J": {0: torch.eye(64)}, "n_prompts": 1}, tmp_path / "j.pt")
    imported = runner.invoke(
        app,
        [
            "lens",
            "import",
            str(tmp_path / "j.pt"),
            "--model",
            str(model_dir),
            "--out",
            str(tmp_path / "imp.safetensors"),
        ],
    )
    assert imported.exit_code == 0, imported.output
    shown = runner.invoke(
        app,
        [
            "top",
            "hello there",
            "-m",
            str(model_dir),
            "--lens",
            "jacobian",
            "--lens-path",
            str(tmp_path / "j.safetensors"),
            "--json",
        ],
    )
    assert shown.exit_code == 0, shown.output
    evaluated = runner.invoke(
        app,
        [
            "lens",
            "eval",
            *common,
            "--seq-len",
            "16",
            "--tokens",
            "32",
            "--items",
            str(items),
            "-l",
            "raw",
            "-l",
            "logit",
            "-l",
            str(tmp_path / "j.safetensors"),
            "-l",
            str(tmp_path / "imp.safetensors"),
            "--json",
            "--plot",
            str(tmp_path / "s.png"),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    payload = json.loads(evaluated.stdout)
    assert payload["lenses"] == ["raw", "logit", "jacobian", "imp"]
    assert payload["pass_at_k"]["categories"] == {"all": 3, "fact": 2, "pun": 1}
    assert payload["kl"]["imp"] == payload["kl"]["logit"]  # J = I on the layers it has
    assert (tmp_path / "s.png").is_file()
    table = runner.invoke(
        app,
        [
            "lens",
            "eval",
            *common,
            "--seq-len",
            "16",
            "--tokens",
            "32",
            "--items",
            "none",
            "-l",
            "logit",
        ],
    )
    assert table.exit_code == 0 and "top-1 logit" in table.output, table.output
