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
    header, *lines = path.read_text().splitlines()
    assert json.loads(header)["format"] == runs.FORMAT
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
    assert len(path.read_text().splitlines()) == 1 + 2  # header and the first batch
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


def test_another_lens_or_option_is_refused_naming_the_part(model, tmp_path):
    path = tmp_path / "out.jsonl"
    runs.analyze_to_jsonl(model, PROMPTS[:2], path, targets=TARGETS[:2], lens="logit")
    before = path.read_bytes()
    with pytest.raises(InputError, match=r"differs in lens \(name\)"):
        runs.analyze_to_jsonl(model, PROMPTS[:2], path, targets=TARGETS[:2], lens="raw")
    with pytest.raises(InputError, match=r"differs in options \(k\)"):
        runs.analyze_to_jsonl(model, PROMPTS[:2], path, targets=TARGETS[:2], k=3)
    assert path.read_bytes() == before


def test_two_checkpoints_with_one_name_never_share_results(wrap_tiny, tmp_path):
    """The key holds the weights' fingerprint, not the directory's basename."""
    path = tmp_path / "out.jsonl"
    first, second = wrap_tiny("llama", seed=0), wrap_tiny("llama", seed=1)
    assert first.name == second.name
    runs.analyze_to_jsonl(first, PROMPTS[:2], path, targets=TARGETS[:2])
    with pytest.raises(InputError, match=r"differs in model \(weights_sha256\)"):
        runs.analyze_to_jsonl(second, PROMPTS[:2], path, targets=TARGETS[:2])


def test_a_file_that_is_not_ours_is_never_touched(model, tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("my precious notes\n")
    with pytest.raises(InputError, match="not a logitlens results file"):
        runs.analyze_to_jsonl(model, PROMPTS[:1], path)
    assert path.read_text() == "my precious notes\n"


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_fifos_directories_and_devices_are_refused_up_front(model, tmp_path, kind):
    import os

    path = {"fifo": tmp_path / "pipe", "directory": tmp_path, "device": "/dev/full"}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(InputError, match=r"not a regular file|is a directory"):
        runs.analyze_to_jsonl(model, PROMPTS[:1], path)


def test_a_corrupt_middle_line_is_set_aside_and_the_rest_kept(model, tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    runs.analyze_to_jsonl(model, PROMPTS[:3], path, targets=TARGETS[:3])
    header, one, _two, three = path.read_text().splitlines()
    path.write_text("\n".join([header, one, "garbage {", three]) + "\n")
    seen = _count_analysed(monkeypatch)
    with pytest.warns(UserWarning, match="1 corrupt line"):
        result = runs.analyze_to_jsonl(model, PROMPTS[:3], path, targets=TARGETS[:3])
    assert seen == [1]  # only the prompt of the corrupt line is recomputed
    assert (tmp_path / "out.jsonl.rejected").read_text() == "garbage {\n"
    _assert_same(result, logitlens.analyze(model, PROMPTS[:3], targets=TARGETS[:3]))


def test_a_second_run_on_the_same_file_stops_with_a_clear_message(model, tmp_path):
    import fcntl

    path = tmp_path / "out.jsonl"
    runs.analyze_to_jsonl(model, PROMPTS[:1], path)
    with path.open("ab") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        with pytest.raises(logitlens.OutputError, match="Another logitlens run is writing"):
            runs.analyze_to_jsonl(model, PROMPTS[:2], path)


def test_bad_output_directory_and_target_count(model, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        runs.analyze_to_jsonl(model, PROMPTS, tmp_path / "missing" / "out.jsonl")
    with pytest.raises(InputError, match="targets for"):
        runs.analyze_to_jsonl(model, PROMPTS, tmp_path / "out.jsonl", targets=TARGETS[:2])


def _records(path) -> list[str]:
    """The complete, valid record lines of a results file (keys)."""
    keys = []
    for line in path.read_bytes().splitlines(keepends=True)[1:]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if line.endswith(b"\n") and isinstance(record, dict) and "key" in record:
            keys.append(record["key"])
    return keys


@pytest.mark.parametrize("signum", ["SIGKILL", "SIGINT"])
def test_a_repair_stopped_inside_its_rewrite_keeps_every_record(tiny_dir, tmp_path, signum, capsys):
    """kill -9 or Ctrl-C between writing the repaired file and renaming it: every good
    record is still there, Ctrl-C says how many, and a rerun completes the file."""
    import signal as signals

    from rewrite_window import signal_inside_rewrite

    from logitlens.cli import main

    path = tmp_path / "out.jsonl"
    pairs = [arg for i in range(8) for arg in ("--pair", f"Prompt number {i} is=> the")]
    args = ["compare", *pairs, "--model", str(tiny_dir), "--out", str(path), "--batch-size", "2"]
    with pytest.raises(SystemExit) as finished:
        main(args)
    assert finished.value.code in (0, None)
    header, *lines = path.read_text().splitlines()
    assert len(lines) == 8
    good = [json.loads(line)["key"] for i, line in enumerate(lines) if i != 3]
    path.write_text("\n".join([header, *lines[:3], "garbage {", *lines[4:]]) + "\n")

    stopped = signal_inside_rewrite(args, tmp_path / "marker", getattr(signals, signum))
    assert sorted(_records(path)) == sorted(good)  # the old file, whole
    assert not [p.name for p in tmp_path.glob(".out.jsonl*")] or signum == "SIGKILL"
    if signum == "SIGINT":
        assert stopped.returncode == 130, stopped.stderr
        assert f"Interrupted. 7 finished prompt(s) are kept in {path}" in stopped.stderr
        assert "Unexpected" not in stopped.stderr

    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(args)
    # The CLI shows a library warning as one line on stderr (cli.main's warning display).
    assert "Warning: 1 corrupt line(s)" in capsys.readouterr().err
    assert len(_records(path)) == 8 and set(good) <= set(_records(path))
    assert not list(tmp_path.glob(".out.jsonl*"))  # a killed rewrite's temporary is gone too
    assert "garbage {" in (tmp_path / "out.jsonl.rejected").read_text()


def test_an_interrupted_run_says_how_many_prompts_are_on_disk(tmp_path):
    path = tmp_path / "out.jsonl"
    assert runs.kept_in(path) == "Nothing was written."
    path.write_text('{"format": "logitlens-results/1"}\n')
    assert runs.kept_in(path) == f"No prompt was finished ({path} holds no results yet)."
    path.write_text('{"format": "logitlens-results/1"}\n{"key": "a", "result": {}}\n{"key"')
    assert runs.kept_in(path).startswith(f"1 finished prompt(s) are kept in {path}")
