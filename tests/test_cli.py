"""The analysis commands: tables, --json payloads, JSONL input and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import logitlens
import logitlens.loading
from logitlens.cli import app, main, runners

PUN = "Why do electricians make good swimmers? Because they know the"
LITERAL = "Electricians work with wires that carry electrical"


@pytest.fixture
def cli(tiny, monkeypatch):
    """``run(*args)``: the CLI on the tiny model, returning click's Result."""
    monkeypatch.setattr(runners, "open_model", lambda *args, **kwargs: tiny)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_info_json_describes_the_model(cli, tiny):
    info = _json(cli("info", "--json"))
    assert info["n_layers"] == tiny.n_layers
    assert info["vocab_size"] == tiny.vocab_size
    assert info["model_type"] == "llama"


def test_top_json_is_the_library_result(cli, tiny):
    payload = _json(cli("top", PUN, "--k", "3", "--layers", "0,-1", "--positions", "all", "--json"))
    expected = logitlens.analyze(tiny, PUN, k=3, layers="0,-1", positions="all")
    np.testing.assert_array_equal(np.array(payload["top_ids"]), expected.top_ids)
    assert payload["layers"] == [0, tiny.n_layers - 1]
    assert payload["dims"]["top_ids"] == ["prompt", "layer", "position", "k"]


def test_top_table_lists_every_layer(cli, tiny):
    result = cli("top", PUN, "--k", "4", "--show", "2")
    assert result.exit_code == 0, result.output
    expected = logitlens.analyze(tiny, PUN, k=4)
    for layer in range(tiny.n_layers):
        best = expected.top_tokens(layer=layer)[0]
        assert f"{best.token!r} {best.prob:.3f}" in result.output


def test_track_json_summary_matches_the_result(cli, tiny):
    payload = _json(cli("track", PUN, "--target", " current", "--threshold", "0.01", "--json"))
    expected = logitlens.analyze(tiny, PUN, targets=" current")
    summary = payload["summary"]
    assert summary["first_layer_above"] == expected.first_layer_above(0.01)
    assert summary["first_layer_top1"] == expected.first_layer_top1()
    assert summary["target"] == " current"
    assert summary["final_prob"] == pytest.approx(float(expected.target_prob[0, -1, 0, 0]))


def test_track_says_plainly_when_the_target_never_rises(cli):
    result = cli("track", PUN, "--target", " current", "--threshold", "1.0")
    assert result.exit_code == 0, result.output
    assert "never exceeds 1.0" in " ".join(result.output.split())


def test_track_accepts_token_ids(cli, tiny):
    payload = _json(cli("track", PUN, "--target", "id:7", "--json"))
    assert payload["summary"]["target_id"] == 7


def test_compare_pairs_and_jsonl_file(cli, tiny, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"prompt": LITERAL, "target": " current"})
        + "\n\n"
        + json.dumps({"prompt": "The capital of France is", "target": " Paris"})
        + "\n"
    )
    payload = _json(cli("compare", "--pair", f"{PUN}=> current", "--file", str(pairs), "--json"))
    assert [s["prompt"] for s in payload["summaries"]] == [PUN, LITERAL, "The capital of France is"]
    assert [s["target"] for s in payload["summaries"]] == [" current", " current", " Paris"]
    expected = logitlens.analyze(
        tiny, [PUN, LITERAL, "The capital of France is"], targets=[" current", " current", " Paris"]
    )
    np.testing.assert_allclose(np.array(payload["result"]["target_prob"]), expected.target_prob)


def test_compare_out_writes_a_resumable_file(cli, tmp_path):
    out = tmp_path / "results.jsonl"
    first = cli("compare", "--pair", f"{PUN}=> current", "--out", str(out))
    assert first.exit_code == 0, first.output
    assert len(out.read_text().splitlines()) == 2  # the header, then one result
    second = cli(
        "compare", "--pair", f"{PUN}=> current", "--pair", f"{LITERAL}=> current", "--out", str(out)
    )
    assert second.exit_code == 0, second.output
    assert len(out.read_text().splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare"], "Nothing to compare"),
        (["compare", "--pair", "no separator"], "PROMPT=>TARGET"),
        (["top", ""], "empty"),
        (["top", PUN, "--layers", "99"], "out of range"),
        (["top", PUN, "--k", "0"], "'--k' / '-k': Input should be greater than or equal to 1"),
        (["top", PUN, "--lens", "magic"], "Unknown lens"),
        (["track", PUN, "--target", "id:x"], "id:1234"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_2(tiny, monkeypatch, capsys, args, message):
    monkeypatch.setattr(runners, "open_model", lambda *a, **k: tiny)
    monkeypatch.setattr(sys, "argv", ["logitlens", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    error = " ".join(capsys.readouterr().err.split())
    assert error.startswith("Error:") and message in error
    assert "Traceback" not in error


def test_a_bad_jsonl_line_names_the_line(cli, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "a", "target": " b"}\nnot json\n')
    result = cli("compare", "--file", str(pairs))
    assert isinstance(result.exception, logitlens.InputError)
    assert f"{pairs}:2" in str(result.exception)


@pytest.mark.bundled
def test_demo_on_the_bundled_model_as_a_user_runs_it(bundled):
    completed = subprocess.run(
        [sys.executable, "-m", "logitlens", "demo", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    payload = json.loads(completed.stdout)
    expected = logitlens.analyze(bundled, PUN, targets=" current").target_summary(0.1)
    assert payload["summary"]["first_layer_above"] == expected.first_layer_above
    assert payload["summary"]["first_layer_top1"] == expected.first_layer_top1
    assert payload["summary"]["final_prob"] == pytest.approx(expected.final_prob, rel=1e-4)
    assert len(payload["result"]["layers"]) == 30


@pytest.mark.parametrize(
    ("device", "expected"),
    [("auto", {"device_map": "auto"}), ("cpu", {"device": "cpu"}), (None, {"device": None})],
)
def test_device_auto_spreads_the_model_over_gpus(monkeypatch, device, expected):
    from logitlens.cli import runners

    calls = []
    monkeypatch.setattr(
        logitlens.loading, "load_model", lambda *args, **kwargs: calls.append(kwargs)
    )
    runners.open_model("some/model", False, device)
    assert calls == [{"remote": False, "timeout": None, **expected}]


FRONT_DOOR = """
import contextlib, io, sys
from logitlens.cli import app, main
import typer

def paths(command, path):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from paths(sub, [*path, name])

commands = list(paths(typer.main.get_command(app), []))
for args in [[*p, "--help"] for p in commands] + [["top", "x", "--k", "0"], ["track", "x"],
        ["top", "x", "--metrics", "bogus"], ["grid", "x", "-o", "g.png", "--metric", "logit_diff"]]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(args)
        except SystemExit as stop:
            assert stop.code == (0 if args[-1] == "--help" else 2), (args, stop.code)
heavy = ("torch", "transformers", "nnsight", "matplotlib", "pandas", "safetensors")
print(len(commands), [name for name in heavy if name in sys.modules])
"""


def test_help_and_argument_errors_import_nothing_heavy():
    """Every command's --help and argument errors run without torch and friends, so they
    stay fast; a command module that imports one at its top fails here."""
    completed = subprocess.run(
        [sys.executable, "-c", FRONT_DOOR], capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    n_commands, heavy = completed.stdout.split(" ", 1)
    assert int(n_commands) > 20
    assert heavy.strip() == "[]", f"imported by --help or an argument error: {heavy}"


def test_metrics_that_cannot_be_computed_are_refused_before_the_model_loads(monkeypatch, capsys):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(runners, "open_model", no_model)
    for args, message in [
        (["top", PUN, "--metrics", "bogus"], "Unknown metric(s) ['bogus']"),
        (["track", PUN, "-t", " x", "--metrics", "logit_diff"], "--alternative"),
        (["grid", PUN, "-o", "g.png", "--metric", "logit_diff"], "needs a target"),
        (["grid", PUN, "-o", "g.png", "--metric", "nope"], "Unknown grid metric 'nope'"),
    ]:
        with pytest.raises(SystemExit) as stopped:
            main(args)
        assert stopped.value.code == 2
        assert message in capsys.readouterr().err


def test_track_alternative_adds_logit_diff(cli, tiny):
    payload = _json(cli("track", PUN, "-t", " current", "-a", " water", "--json"))
    expected = logitlens.analyze(tiny, PUN, targets=" current", alternatives=" water")
    np.testing.assert_allclose(np.array(payload["result"]["logit_diff"]), expected.logit_diff)
    table = cli("track", PUN, "-t", " current", "--alternative", " water")
    assert table.exit_code == 0 and "vs ' water'" in table.stdout


def test_grid_colours_logit_diff(cli, tmp_path):
    out = tmp_path / "grid.png"
    result = cli("grid", PUN, "-o", str(out), "--metric", "logit_diff", "-t", " a", "-a", " b")
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0


def test_compare_alternatives_from_the_file_and_the_option(cli, tiny, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    lines = [
        {"prompt": PUN, "target": " current", "alternative": " water"},
        {"prompt": LITERAL, "target": " current", "alternative": " power"},
    ]
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    expected = logitlens.analyze(
        tiny, [PUN, LITERAL], targets=[" current"] * 2, alternatives=[" water", " power"]
    )
    out = tmp_path / "results.jsonl"
    for _ in range(2):  # the second run resumes from the file
        payload = _json(cli("compare", "-f", str(pairs), "--out", str(out), "--json"))
        got = np.array(payload["result"]["logit_diff"])
        np.testing.assert_allclose(got, expected.logit_diff, rtol=1e-5, atol=1e-5)
    assert len(out.read_text().splitlines()) == 3
    payload = _json(cli("compare", "-p", f"{PUN}=> current", "-a", " water", "--json"))
    np.testing.assert_allclose(
        np.array(payload["result"]["logit_diff"])[0], expected.logit_diff[0], rtol=1e-5, atol=1e-5
    )
    mixed = cli("compare", "-f", str(pairs), "-p", f"{PUN}=> current")
    assert "on every line" in str(mixed.exception)


def test_tuned_train_device_auto_trains_and_saves(tiny, monkeypatch, tmp_path):
    from logitlens.cli import runners

    asked = []
    monkeypatch.setattr(
        runners, "open_model", lambda model, remote, device: asked.append(device) or tiny
    )
    out = tmp_path / "lens.safetensors"
    result = CliRunner().invoke(
        app,
        ["tuned", "train", "--device", "auto", "--tokens", "64", "--seq-len", "16",
         "--batch-size", "2", "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert asked == ["auto"] and out.stat().st_size > 0
