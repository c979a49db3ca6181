"""Every bad input a user can give: one line naming the problem, exit code 2, no traceback.

A table of command lines and library calls. CLI cases run through ``cli.main`` on a tiny
model (the model loader is replaced, so a case that reaches it still runs in
milliseconds); a few run as real subprocesses to time argument errors and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import logitlens
from logitlens.cli import main, runners
from logitlens.errors import LogitLensError

PUN = "Why do electricians make good swimmers? Because they know the"


@pytest.fixture
def files(tmp_path):
    """Bad input files, by name."""
    paths = {name: tmp_path / name for name in ("out_dir",)}
    paths["out_dir"].mkdir()
    contents = {
        "bom.jsonl": "\ufeff" + json.dumps({"prompt": 123, "target": " x"}) + "\n",
        "prompt_int.jsonl": json.dumps({"prompt": 123, "target": " x"}) + "\n",
        "target_float.jsonl": json.dumps({"prompt": "a b", "target": 1.5}) + "\n",
        "no_target.jsonl": json.dumps({"prompt": "a b"}) + "\n",
        "bad_json.jsonl": '{"prompt": "a", "target": " b"}\n{oops\n',
        "list.jsonl": "[1, 2]\n",
        "blank.jsonl": "\n\n",
        "notes.txt": "my notes\n",
        "bad.txt": "x",
    }
    for name, text in contents.items():
        paths[name] = tmp_path / name
        paths[name].write_text(text, encoding="utf-8")
    paths["latin1.jsonl"] = tmp_path / "latin1.jsonl"
    paths["latin1.jsonl"].write_bytes('{"prompt": "caf\xe9", "target": " x"}\n'.encode("latin-1"))
    paths["fifo"] = tmp_path / "fifo"
    os.mkfifo(paths["fifo"])
    from safetensors.torch import save_file

    paths["nan.safetensors"] = tmp_path / "nan.safetensors"
    save_file({"weight": torch.tensor([float("nan")])}, str(paths["nan.safetensors"]))
    paths["config_only"] = tmp_path / "config_only"
    paths["config_only"].mkdir()
    (paths["config_only"] / "config.json").write_text('{"model_type": "llama"}')
    paths["tmp"] = tmp_path
    return paths


CLI_CASES = [
    # option values
    (["top", PUN, "--k", "0"], "'--k' / '-k': Input should be greater than or equal to 1"),
    (["top", PUN, "--k", "-3"], "greater than or equal to 1"),
    (["top", PUN, "--k", "abc"], "Input should be a valid integer"),
    (["top", PUN, "--k", "2.5"], "Input should be a valid integer"),
    (["top", PUN, "--show", "0"], "'--show'"),
    (["top", PUN, "--layers", "foo"], "Bad layer 'foo'"),
    (["top", PUN, "--layers", "1.5"], "Bad layer '1.5'"),
    (["top", PUN, "--layers", "a:b"], "Bad layer range 'a:b'"),
    (["top", PUN, "--layers", ","], "Bad --layers"),
    (["top", PUN, "--layers", "99"], "Layer 99 is out of range"),
    (["top", PUN, "--layers", "-9"], "Layer -9 is out of range"),
    (["top", PUN, "--layers", "5:9"], "No layers selected"),
    (["top", PUN, "--positions", "x"], "Bad position 'x'"),
    (["top", PUN, "--positions", "0.5"], "Bad position '0.5'"),
    (["top", PUN, "--positions", ","], "No positions selected"),
    (["top", PUN, "--positions", "999"], "Position 999 is out of range"),
    (["top", PUN, "--metrics", "bogus"], "Unknown metric(s) ['bogus']"),
    (["top", PUN, "--metrics", ","], "metrics=[] selects nothing"),
    (["top", PUN, "--metrics", "target"], "'target' metric needs a target"),
    (["top", PUN, "--lens", "magic"], "Unknown lens 'magic'"),
    (["top", PUN, "--lens", "tuned"], "No tuned lens for"),
    (["top", PUN, "--lens", "jacobian"], "No jacobian lens for"),
    (["top", PUN, "--lens", "raw", "--tuned-path", "x.safetensors"], "--tuned-path is for"),
    (["top", PUN, "--tuned-path", "{nan.safetensors}"], "NaN or infinite"),
    (["top", PUN, "--tuned-path", "{notes.txt}"], "not a readable safetensors"),
    (["top", PUN, "--tuned-path", "{tmp}/missing.safetensors"], "No tuned-lens file"),
    (["top", PUN, "--tuned-path", "{out_dir}"], "No tuned-lens file"),
    (["top", PUN, "--device", "tpu"], "Unknown device 'tpu'"),
    (["top", PUN, "--device", "gpu0"], "Unknown device 'gpu0'"),
    (["top", PUN, "--plot", "{tmp}/x.bmp"], "Cannot tell the file type"),
    (["top", PUN, "--plot", "{tmp}/missing/x.png"], "does not exist"),
    (["top", PUN, "--plot", "{out_dir}"], "is a directory"),
    (["top", PUN, "--plot", "{fifo}"], "is a FIFO"),
    (["top", PUN, "--plot", "/dev/full"], "is a device"),
    (["top", ""], "Prompt 0 is empty"),
    (["top", "   "], "Prompt 0 is empty"),
    (["top", "caf\udce9"], "not valid UTF-8"),
    (["top"], "Missing argument 'prompt'"),
    (["top", PUN, "--nope"], "No such option: --nope"),
    (["nonsense"], "No such command 'nonsense'"),
    # targets and thresholds
    (["track", PUN], "Missing option '--target'"),
    (["track", PUN, "-t", ""], "target is empty"),
    (["track", PUN, "-t", "id:x"], "id:1234"),
    (["track", PUN, "-t", "id:99999999"], "outside the vocabulary"),
    (["track", PUN, "-t", " x", "--threshold", "5"], "probability in (0, 1]"),
    (["track", PUN, "-t", " x", "--threshold", "-1"], "probability in (0, 1]"),
    (["track", PUN, "-t", " x", "--threshold", "0"], "probability in (0, 1]"),
    (["track", PUN, "-t", " x", "--threshold", "abc"], "Input should be a valid number"),
    (["demo", "--threshold", "2"], "probability in (0, 1]"),
    (["demo", "--show", "0"], "'--show'"),
    # compare and its files
    (["compare"], "Nothing to compare"),
    (["compare", "-p", "no separator"], "PROMPT=>TARGET"),
    (["compare", "-p", "=> x"], "PROMPT=>TARGET"),
    (["compare", "-p", "a b=>"], "PROMPT=>TARGET"),
    (["compare", "-f", "{tmp}/missing.jsonl"], "No such file"),
    (["compare", "-f", "{out_dir}"], "is a directory"),
    (["compare", "-f", "{fifo}"], "is a FIFO"),
    (["compare", "-f", "{bom.jsonl}"], "bom.jsonl:1: 'prompt' must be non-empty text, got 123"),
    (["compare", "-f", "{prompt_int.jsonl}"], "'prompt' must be non-empty text, got 123"),
    (["compare", "-f", "{target_float.jsonl}"], "'target' must be text"),
    (["compare", "-f", "{no_target.jsonl}"], "has no 'target' field"),
    (["compare", "-f", "{bad_json.jsonl}"], "bad_json.jsonl:2 is not valid JSON"),
    (["compare", "-f", "{list.jsonl}"], "is not a JSON object"),
    (["compare", "-f", "{blank.jsonl}"], "holds no prompt/target pairs"),
    (["compare", "-f", "{latin1.jsonl}"], "is not UTF-8 text (byte 0xe9"),
    (["compare", "-p", "a b=> c", "--batch-size", "0"], "'--batch-size'"),
    (["compare", "-p", "a b=> c", "--threshold", "1.5"], "probability in (0, 1]"),
    (["compare", "-p", "a b=> c", "-o", "{notes.txt}"], "is not a logitlens results file"),
    (["compare", "-f", "{bad.txt}", "-o", "{bad.txt}"], "is also an input file"),
    (["compare", "-p", "a b=> c", "-o", "{fifo}"], "is a FIFO"),
    (["compare", "-p", "a b=> c", "-o", "/dev/full"], "is a device"),
    (["compare", "-p", "a b=> c", "-o", "{out_dir}"], "is a directory"),
    (["compare", "-p", "a b=> c", "-o", "{tmp}/missing/r.jsonl"], "does not exist"),
    # pictures
    (["heatmap", PUN, "-t", " x"], "Missing option '--out'"),
    (["heatmap", PUN, "-t", " x", "-o", "{tmp}/h.txt"], "Cannot tell the file type"),
    (["grid", PUN, "-o", "{tmp}/g.png", "--metric", "loss"], "Unknown grid metric 'loss'"),
    (["grid", PUN, "-o", "{tmp}/g.png", "--window", "0"], "--window must be between 1 and"),
    (["grid", PUN, "-o", "{out_dir}"], "is a directory"),
    (["report", PUN, "-o", "{tmp}/r.png"], "Cannot tell the file type"),
    (["report", PUN, "-o", "{tmp}/r.html", "-t", " a", "-t", " b"], "Got 2 targets for 1"),
    (["report", PUN, "-o", "{tmp}/r.html", "--attribution"], "--attribution needs --target"),
    # tuned lens training and evaluation
    (["tuned", "train", "--warmup-steps", "-5"], "'--warmup-steps'"),
    (["tuned", "train", "--tokens", "0"], "'--tokens'"),
    (["tuned", "train", "--seq-len", "1"], "'--seq-len'"),
    (["tuned", "train", "--lr", "0"], "lr must be positive"),
    (["tuned", "train", "--weight-decay", "-1"], "'--weight-decay'"),
    (["tuned", "train", "--schedule", "zigzag"], "Unknown schedule 'zigzag'"),
    (["tuned", "train", "--dtype", "float7"], "Unknown dtype 'float7'"),
    (["tuned", "train", "--checkpoint-every", "0"], "'--checkpoint-every'"),
    (["tuned", "train", "-o", "{tmp}/lens.pt"], "Write the lens as a .safetensors"),
    (["tuned", "train", "-o", "{tmp}/missing/x/lens.pt"], "Write the lens as a .safetensors"),
    (["tuned", "eval", "--tuned-path", "{nan.safetensors}"], "NaN or infinite"),
    (["tuned", "eval", "--plot", "{tmp}/e.gif"], "Cannot tell the file type"),
    (["tuned", "eval", "--tokens", "0"], "'--tokens'"),
]


def _fill(args, files):
    filled = []
    for arg in args:
        for name, path in files.items():
            arg = arg.replace("{" + name + "}", str(path))
        filled.append(arg)
    return filled


@pytest.mark.parametrize(
    ("args", "message"), CLI_CASES, ids=[" ".join(c[0])[:60] for c in CLI_CASES]
)
def test_cli_bad_input_is_one_line_exit_2(args, message, files, tiny, monkeypatch, capsys):
    monkeypatch.setattr(runners, "open_model", lambda *a, **k: tiny)
    with pytest.raises(SystemExit) as stopped:
        main(_fill(args, files))
    captured = capsys.readouterr()
    assert stopped.value.code == 2, captured.err
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith("Error:"), captured.err
    assert message in lines[-1], captured.err
    assert "Traceback" not in captured.err
    assert all(line.startswith(("Error:", "Note:", "Warning:")) for line in lines), captured.err


LIBRARY_CASES = [
    (lambda m: logitlens.analyze(m, None), "No prompts given"),
    (lambda m: logitlens.analyze(m, 123), "Prompts must be a string or a list"),
    (lambda m: logitlens.analyze(m, [123]), "Prompt 0 must be a string, not int 123"),
    (lambda m: logitlens.analyze(m, b"bytes"), "Prompt 0 is bytes"),
    (lambda m: logitlens.analyze(m, "caf\udce9"), "not valid UTF-8"),
    (lambda m: logitlens.analyze("gpt2", PUN), "not 'gpt2': model = logitlens.load_model('gpt2')"),
    (lambda m: logitlens.analyze(None, PUN), "needs a model from logitlens.load_model()"),
    (lambda m: logitlens.analyze(m, PUN, layers=["foo"]), "Bad layer 'foo'"),
    (lambda m: logitlens.analyze(m, PUN, layers=[0.7, 1.9]), "Bad layer 0.7"),
    (lambda m: logitlens.analyze(m, PUN, layers=1.0), "Bad layer 1.0"),
    (lambda m: logitlens.analyze(m, PUN, layers=[True]), "not a boolean"),
    (lambda m: logitlens.analyze(m, PUN, layers={"a": 1}), "Bad layers"),
    (lambda m: logitlens.analyze(m, PUN, positions=[0.5]), "Bad position 0.5"),
    (lambda m: logitlens.analyze(m, PUN, positions=object()), "Bad positions"),
    (lambda m: logitlens.analyze(m, PUN, metrics=[]), "metrics=[] selects nothing"),
    (lambda m: logitlens.analyze(m, PUN, metrics=[1]), "Bad metrics [1]"),
    (lambda m: logitlens.analyze(m, PUN, metrics="bogus"), "Unknown metric(s) ['bogus']"),
    (lambda m: logitlens.analyze(m, PUN, k=2.5), "Bad k 2.5"),
    (lambda m: logitlens.analyze(m, PUN, k=0), "k must be between 1"),
    (lambda m: logitlens.analyze(m, PUN, k=10**9), "vocabulary size"),
    (lambda m: logitlens.analyze(m, PUN, batch_size=0), "batch_size must be at least 1"),
    (lambda m: logitlens.analyze(m, [PUN, PUN], targets=[None, " x"]), "targets[0] is None"),
    (lambda m: logitlens.analyze(m, PUN, targets=1.5), "must be a string or a token id"),
    (lambda m: logitlens.analyze(m, PUN, lens="nope"), "Unknown lens 'nope'"),
    (lambda m: logitlens.analyze(m, PUN).trajectory("foo"), "no 'foo'"),
    (lambda m: logitlens.analyze(m, PUN).to_json("/nonexistent/dir/r.json"), "does not exist"),
    (lambda m: logitlens.LensResult.from_dict({"garbage": 1}), "not a logitlens result"),
    (lambda m: logitlens.LensResult.from_dict([1, 2]), "not a logitlens result"),
    (lambda m: logitlens.load_model(dtype="float7"), "Unknown dtype 'float7'"),
    (lambda m: logitlens.load_model(device="tpu"), "Unknown device 'tpu'"),
    (lambda m: logitlens.TrainingConfig(warmup_steps=-5).validate(), "warmup_steps must be"),
]


@pytest.mark.parametrize(("call", "message"), LIBRARY_CASES, ids=[c[1][:40] for c in LIBRARY_CASES])
def test_library_bad_input_is_a_clear_error(call, message, tiny):
    with pytest.raises(LogitLensError) as raised:
        call(tiny)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_np_integers_are_indices(tiny):
    result = logitlens.analyze(tiny, PUN, k=np.int64(3), layers=[np.int32(0)], targets=np.int64(7))
    assert result.k == 3 and result.layers == [0] and result.target_ids == [[7]]


def test_metrics_as_one_string_is_one_metric(tiny):
    result = logitlens.analyze(tiny, PUN, metrics="kl")
    assert result.kl is not None and result.top_ids is None


def test_a_config_only_directory_is_a_clear_error(files):
    with pytest.raises(logitlens.ModelLoadError, match="no weights"):
        logitlens.load_model(files["config_only"])


def test_cuda_without_cuda_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(logitlens.ModelLoadError, match="no CUDA GPU"):
        logitlens.load_model(device="cuda")


def test_lens_files_with_nan_are_never_saved(tmp_path):
    from logitlens.lenses.files import write_safetensors

    with pytest.raises(logitlens.LensFileError, match="NaN or infinite"):
        write_safetensors(tmp_path / "x.safetensors", {"w": torch.tensor([float("inf")])}, {})
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch, tiny):
    import errno

    result = logitlens.analyze(tiny, PUN)

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.replace", full)
    with pytest.raises(logitlens.OutputError, match="the disk is full"):
        result.to_json(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []


def _run(*args, env=None):
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-m", "logitlens", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    return completed, time.perf_counter() - started


@pytest.mark.parametrize(
    "args",
    [["top", PUN, "--k", "0"], ["top", PUN, "--layers", "foo"], ["track", PUN], ["--help"]],
)
def test_argument_errors_are_one_line_from_the_real_entry_point(args):
    """``python -m logitlens``, as a user runs it. How fast this comes back is not timed
    here (a loaded machine would fail a timed test): tests/test_cli.py fails if --help or
    an argument error imports torch, and benchmarks/bench_cli.py measures the seconds."""
    completed, _ = _run(*args)
    if args == ["--help"]:
        assert completed.returncode == 0 and "Usage" in completed.stdout, completed.stderr
    else:
        assert completed.returncode == 2
        assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr


def test_debug_shows_the_traceback():
    completed, _ = _run("--debug", "top", PUN, "--layers", "foo")
    assert completed.returncode == 2 and "Traceback" in completed.stderr
    completed, _ = _run("top", PUN, "--layers", "foo", env={"LOGITLENS_DEBUG": "1"})
    assert "Traceback" in completed.stderr


def test_ctrl_c_says_interrupted_and_exits_130(tmp_path):
    """The child resets SIGINT to its default before Python starts, so the test holds
    when the test runner ignores SIGINT (started in the background)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "logitlens", "top", PUN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        start_new_session=True,
    )
    time.sleep(1.5)  # past parsing, into the imports or the load
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Interrupted." in err and "Traceback" not in err
