"""Resumable JSONL runs: same numbers as analyze, nothing recomputed, torn lines healed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import logitlens
from logitlens import runs
from logitlens.errors import InputError

PROMPTS = [
    "Why do electricians make good swimmers? Because they know the",
    "The capital of France is",
    "Why do cows wear bells?",
    "Electricians work with wires that carry electrical",
    "The capital",
]
TARGETS = [" current", " Paris", " the", " current", " of"]


@pytest.fixture
def model(wrap_tiny):
    return wrap_tiny("llama")


def _assert_same(a: logitlens.LensResult, b: logitlens.LensResult) -> None:
    assert a.prompts == b.prompts and a.target_ids == b.target_ids
    for name in ("top_ids", "top_probs", "target_prob", "target_rank", "positions"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-5, err_msg=name)


def _count_analysed(monkeypatch) -> list[int]:
    """Record how many prompts each inner analyze call gets."""
    seen: list[int] = []
    real = runs.analyze

    def counting(model, prompts, **kwargs):
        seen.append(len(prompts))
        return real(model, prompts, **kwargs)

    monkeypatch.setattr(runs, "analyze", counting)
    return seen


def test_results_equal_analyze_and_one_line_per_prompt(model, tmp_path):
    path = tmp_path / "out.jsonl"
    written = runs.analyze_to_jsonl(model, PROMPTS, path, targets=TARGETS, batch_size=2)
    _assert_same(written, logitlens.analyze(model, PROMPTS, targets=TARGETS))
    lines = path.read_text().splitlines()
    assert len(lines) == len(PROMPTS)
    assert [json.loads(line)["result"]["prompts"] for line in lines] == [[p] for p in PROMPTS]


def test_a_second_run_recomputes_nothing(model, tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    first = runs.analyze_to_jsonl(model, PROMPTS, path, targets=TARGETS, batch_size=2)
    seen = _count_analysed(monkeypatch)
    second = runs.analyze_to_jsonl(model, PROMPTS, path, targets=TARGETS, batch_size=2)
    assert seen == []
    _assert_same(first, second)


def test_an_interrupted_run_resumes_where_it_stopped(model, tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    real = runs.analyze
    calls = []

    def interrupted(model, prompts, **kwargs):
        calls.append(len(prompts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, prompts, **kwargs)

    monkeypatch.setattr(runs, "analyze", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runs.analyze_to_jsonl(model, PROMPTS, path, targets=TARGETS, batch_size=2)
    assert len(path.read_text().splitlines()) == 2  # the first batch was kept
    seen = _count_analysed(monkeypatch)
    resumed = runs.analyze_to_jsonl(model, PROMPTS, path, targets=TARGETS, batch_size=2)
    assert sum(seen) == len(PROMPTS) - 2
    _assert_same(resumed, logitlens.analyze(model, PROMPTS, targets=TARGETS))


def test_a_torn_last_line_is_dropped_and_recomputed(model, tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    runs.analyze_to_jsonl(model, PROMPTS[:2], path, targets=TARGETS[:2])
    with path.open("a") as handle:
        handle.write('{"key": "abc", "result": {"model_na')  # a write cut short
    seen = _count_analysed(monkeypatch)
    result = runs.analyze_to_jsonl(model, PROMPTS, path, targets=TARGETS)
    assert sum(seen) == len(PROMPTS) - 2
    assert all(json.loads(line) for line in path.read_text().splitlines())
    _assert_same(result, logitlens.analyze(model, PROMPTS, targets=TARGETS))


def test_other_options_are_other_results(model, tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    runs.analyze_to_jsonl(model, PROMPTS[:2], path, targets=TARGETS[:2], lens="logit")
    seen = _count_analysed(monkeypatch)
    raw = runs.analyze_to_jsonl(model, PROMPTS[:2], path, targets=TARGETS[:2], lens="raw")
    assert sum(seen) == 2
    assert raw.lens == "raw"


def test_bad_output_directory_and_target_count(model, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        runs.analyze_to_jsonl(model, PROMPTS, tmp_path / "missing" / "out.jsonl")
    with pytest.raises(InputError, match="targets for"):
        runs.analyze_to_jsonl(model, PROMPTS, tmp_path / "out.jsonl", targets=TARGETS[:2])
