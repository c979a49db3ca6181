"""Tests for logitlens.lens_registry: a lens added in ONE file reaches every entry point.

``ScaledLens`` and its ``register_lens`` call below are the whole of a new lens with a
parameter. The tests check that it reaches ``analyze`` (numbers against the plain-PyTorch
reference), ``lens eval``, the command line (``--lens scaled:temperature=2``) and a
resumed run, which refuses the other setting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import reference
import torch
from typer.testing import CliRunner

import logitlens
from logitlens import runs
from logitlens.cli import app, main
from logitlens.errors import InputError
from logitlens.lens_registry import LENSES, LensKind, lens_help, parse_lens_spec, register_lens
from logitlens.lenses import Lens, LogitLens, TunedLens, Unembedding, get_lens


@dataclass
class ScaledLens(Lens):
    """The logit lens read at a temperature: ``logits / temperature``."""

    name: ClassVar[str] = "scaled"
    temperature: float = 1.0

    def project(
        self, unembedding: Unembedding, hidden: torch.Tensor, layers: Sequence[int]
    ) -> torch.Tensor:
        return unembedding.logits(unembedding.norm(hidden)) / self.temperature


@pytest.fixture(autouse=True)
def scaled_lens():
    """Register the lens for one test (it leaves the registry as it found it)."""
    register_lens(LensKind("scaled", "the logit lens at a temperature", ScaledLens))
    yield
    del LENSES["scaled"]


PROMPT = "The river bank is"
ALL = ["--positions", "all", "--json"]


@pytest.fixture
def model_dir(tmp_path):
    from tiny_models import tiny_model

    hf_model, tokenizer = tiny_model("llama")
    hf_model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    return tmp_path / "tiny"


def _reference_top(model: logitlens.LensModel, temperature: float, k: int):
    """Top-k probabilities and ids ``[layer, position, k]`` from plain PyTorch hooks."""
    ids = model.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    hidden = reference.residuals(model.module, ids)[:, 0]
    probs = (reference.logit_lens_logits(model.module, hidden).float() / temperature).softmax(-1)
    return probs.topk(k, dim=-1)


def test_analyze_takes_the_lens_by_name_with_its_parameter(wrap_tiny):
    model = wrap_tiny("llama")
    result = logitlens.analyze(model, PROMPT, lens="scaled:temperature=2.5", positions="all", k=4)
    expected = _reference_top(model, 2.5, 4)
    assert result.lens == "scaled"
    np.testing.assert_allclose(result.top_probs[0], expected.values.numpy(), rtol=1e-4, atol=1e-6)
    cold = logitlens.analyze(model, PROMPT, lens=ScaledLens(0.5), positions="all", k=4)
    np.testing.assert_allclose(
        cold.top_probs[0], _reference_top(model, 0.5, 4).values.numpy(), rtol=1e-4, atol=1e-6
    )
    assert not np.allclose(cold.top_probs, result.top_probs)  # the parameter is used


def test_the_spec_is_parsed_typed_and_checked():
    kind, values = parse_lens_spec("scaled:temperature=2")
    assert kind.name == "scaled" and values == {"temperature": 2.0}
    assert type(values["temperature"]) is float
    assert get_lens("scaled:temperature=3") == ScaledLens(3.0)
    assert get_lens("scaled") == ScaledLens()
    with pytest.raises(InputError, match=r"no parameter 'temp' \(its parameters: temperature\)"):
        get_lens("scaled:temp=2")
    with pytest.raises(InputError, match=r"Bad value 'hot' .* expected float"):
        get_lens("scaled:temperature=hot")
    with pytest.raises(InputError, match="write its parameters as scaled:key=value"):
        get_lens("scaled:temperature")
    with pytest.raises(InputError, match="The logit lens has no parameter 'temperature'"):
        get_lens("logit:temperature=2")
    with pytest.raises(InputError, match=r"Unknown lens 'warm'\. Choose one of: .*scaled"):
        get_lens("warm")
    assert "scaled (the logit lens at a temperature)" in lens_help()


def test_the_identity_holds_the_parameters_and_old_identities_stay():
    assert ScaledLens(2.0).identify() == {
        "name": "scaled",
        "sha256": None,
        "parameters": {"temperature": 2.0},
    }
    assert ScaledLens(2.0).identify() != ScaledLens(3.0).identify()
    # a lens without parameters keeps the identity (and study hash) it had before
    assert LogitLens().identify() == {"name": "logit", "sha256": None}
    from logitlens.studies.run import _sha256_json, lens_hash

    assert lens_hash(LogitLens()) == _sha256_json(["logit", None])
    assert lens_hash(ScaledLens(2.0)) != lens_hash(ScaledLens(3.0))


def test_a_resumed_run_refuses_the_other_parameter(wrap_tiny, tmp_path):
    model = wrap_tiny("llama")
    path = tmp_path / "out.jsonl"
    prompts = [PROMPT, "Rivers run to the"]
    first = runs.analyze_to_jsonl(model, prompts, path, lens="scaled:temperature=2", k=3)
    again = runs.analyze_to_jsonl(model, prompts, path, lens=ScaledLens(2.0), k=3)
    np.testing.assert_array_equal(first.top_probs, again.top_probs)
    with pytest.raises(InputError, match=r"differs in lens \(parameters\)"):
        runs.analyze_to_jsonl(model, prompts, path, lens="scaled:temperature=3", k=3)
    with pytest.raises(InputError, match=r"differs in lens \(parameters\)"):
        runs.analyze_to_jsonl(model, prompts, path, lens="scaled", k=3)


def test_a_resumed_study_refuses_the_other_parameter(wrap_tiny, tmp_path):
    from study_items import make_items

    from logitlens.studies import run_study

    model = wrap_tiny("llama")
    out = tmp_path / "study"
    run_study(model, make_items(2), out_dir=out, lens="scaled:temperature=2", progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["lens"]["parameters"] == {"temperature": 2.0}
    with pytest.raises(InputError, match=r"lens \(parameters, sha256\): parameters"):
        run_study(model, make_items(2), out_dir=out, lens=ScaledLens(3.0), progress=False)


def _exit_2(args: list[str], capsys) -> str:
    """The one-line error of a command line that ``main`` stops with exit code 2."""
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    return capsys.readouterr().err


def test_the_command_line_builds_it_and_a_resumed_compare_refuses_another(
    model_dir, tmp_path, capsys
):
    runner = CliRunner()
    shown = runner.invoke(
        app,
        ["top", PROMPT, "-m", str(model_dir), "--lens", "scaled:temperature=2", "-k", "3", *ALL],
    )
    assert shown.exit_code == 0, shown.output
    result = logitlens.LensResult.from_dict(json.loads(shown.stdout))
    model = logitlens.load_model(model_dir)
    expected = _reference_top(model, 2.0, 3)
    assert result.lens == "scaled"
    np.testing.assert_allclose(result.top_probs[0], expected.values.numpy(), rtol=1e-4, atol=1e-6)

    bad = _exit_2(["top", PROMPT, "-m", str(model_dir), "--lens", "scaled:temp=2"], capsys)
    assert "no parameter 'temp'" in bad

    out = tmp_path / "compare.jsonl"
    compare = ["compare", "-p", f"{PROMPT}=> wet", "-m", str(model_dir), "-o", str(out)]
    done = runner.invoke(app, [*compare, "--lens", "scaled:temperature=2"])
    assert done.exit_code == 0, done.output
    refused = _exit_2([*compare, "--lens", "scaled:temperature=3"], capsys)
    assert "differs in lens (parameters)" in refused


def test_lens_eval_scores_it_beside_the_logit_lens(model_dir, tmp_path):
    from logitlens.training.corpus import bible_documents

    (tmp_path / "texts").mkdir()
    for index, document in enumerate(bible_documents()[:40]):
        (tmp_path / "texts" / f"{index}.txt").write_text(document)
    evaluated = CliRunner().invoke(
        app,
        [
            *["lens", "eval", "--model", str(model_dir), "--corpus", str(tmp_path / "texts")],
            *["--seq-len", "16", "--tokens", "48", "--items", "none", "--json"],
            *["-l", "logit", "-l", "scaled:temperature=2", "-l", "scaled:temperature=1"],
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    payload = json.loads(evaluated.stdout)
    assert payload["lenses"] == ["logit", "scaled:temperature=2", "scaled:temperature=1"]
    # a temperature keeps every argmax and changes every distribution; at 1 it is the logit lens
    assert payload["top1_agreement"]["scaled:temperature=2"] == payload["top1_agreement"]["logit"]
    assert payload["kl"]["scaled:temperature=1"] == payload["kl"]["logit"]
    assert all(
        hot != cold
        for hot, cold in zip(
            payload["kl"]["scaled:temperature=2"], payload["kl"]["logit"], strict=True
        )
    )


def test_a_lens_with_a_file_is_found_in_the_user_cache_by_its_entry(
    wrap_tiny, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = wrap_tiny("llama")
    tuned = LENSES["tuned"]
    with pytest.raises(InputError, match=r"No tuned lens for .* in the user cache"):
        tuned.cached(model)
    TunedLens.identity(model).save(tuned.cache_path(model))
    assert tuned.cached(model).identify() == TunedLens.identity(model).identify()
    assert LENSES["jacobian"].cache_path(model).name.endswith(".jlens.safetensors")
