"""Code that runs inside the trace must be shippable to NDIF by value.

logitlens is not installed on NDIF's servers: ``nnsight.register(logitlens)`` ships
the functions the trace calls, with their module globals. An import executed at call
time (``from .x import y`` inside a function) would look for logitlens on the server
and fail there, while every local test, ``remote="local"`` included, still passes.
This test keeps such imports out of the trace path. Importing torch at call time is
fine (NDIF has it; metrics and residuals do so to keep the command line torch-free).
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import logitlens
from logitlens import analysis, architectures, lenses, metrics, residuals

TRACE_PATH = [
    analysis.lens_reductions,
    residuals.read_residuals,
    analysis.reduce_residuals,
    residuals.chunk_plan,
    residuals.layer_output,
    architectures.resolve,
    lenses.Unembedding,
    lenses.LogitLens,
    lenses.RawLens,
    metrics.entropy,
    metrics.kl_divergence,
    metrics.token_rank,
    metrics._count_above,
    *(
        reduce
        for metric in metrics.REGISTRY.values()
        for reduce in (metric.on_logits, metric.on_logprobs)
        if reduce is not None
    ),
    lenses.TunedLens.translate,
    lenses.TunedLens.project,
]


@pytest.mark.parametrize("code", TRACE_PATH, ids=lambda code: code.__qualname__)
def test_no_import_runs_inside_the_trace(code):
    imports = _logitlens_imports(code)
    assert not imports, f"{code.__qualname__} imports at call time: {ast.unparse(imports[0])}"


def _logitlens_imports(code) -> list[ast.AST]:
    """Imports of logitlens modules in ``code``'s source (relative ones included)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and (node.level or (node.module or "").split(".")[0] == "logitlens")
        ) or (
            isinstance(node, ast.Import)
            and any(alias.name.split(".")[0] == "logitlens" for alias in node.names)
        ):
            found.append(node)
    return found


def test_the_check_catches_a_call_time_import():
    def shipped(x):
        from logitlens.metrics import entropy

        return entropy(x)

    def relative(x):
        from .metrics import entropy

        return entropy(x)

    def with_torch(x):
        import torch

        return torch.stack([x])

    assert _logitlens_imports(shipped) and _logitlens_imports(relative)
    assert not _logitlens_imports(with_torch)


# --- Over a real socket: the loopback NDIF server (tests/ndif_server.py) -------------------

API_KEY = "llk-test-0b6f4e2d9a51-secret"
TINY = "test-org/tiny-llama"
BUNDLED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
PROMPTS = ["Why do electricians make good swimmers? Because they know the", "The river bank"]
ARRAYS = (
    "top_ids",
    "top_probs",
    "target_prob",
    "target_rank",
    "target_logit",
    "entropy",
    "kl",
    "final_rank",
    "model_top_ids",
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from tiny_models import tiny_model

    directory = tmp_path_factory.mktemp("hub") / "tiny-llama"
    hf_model, tokenizer = tiny_model("llama")
    hf_model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def ndif(tiny_dir, tmp_path_factory):
    """The loopback server, hosting the tiny model and the bundled one, reached as NDIF + hub."""
    import huggingface_hub.constants as hub
    import huggingface_hub.hf_api
    import transformers.utils.hub
    from ndif_server import launch
    from nnsight import CONFIG

    log = tmp_path_factory.mktemp("ndif") / "requests.jsonl"
    server = launch(
        {TINY: tiny_dir, BUNDLED_ID: logitlens.loading.bundled_model_dir()},
        api_key=API_KEY,
        log=log,
        idle_timeout=120,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hub, "ENDPOINT", server.url)
        # The module-level HfApi (model_info, list_repo_tree ...) read ENDPOINT when it was
        # built, which may have been before this fixture ran.
        patch.setattr(huggingface_hub.hf_api.api, "endpoint", server.url)
        patch.setattr(transformers.utils.hub, "_hf_api", None)  # its shared HfApi, likewise
        template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
        patch.setattr(hub, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        patch.setattr(CONFIG.API, "HOST", server.url)
        patch.setattr(CONFIG.API, "APIKEY", API_KEY)
        patch.setenv("NDIF_API_KEY", API_KEY)
        yield server
    server.stop()


@pytest.fixture
def healthy(ndif, tmp_path, monkeypatch):
    """A fault-free server, and a fresh cache for the unembeddings fetched from its hub."""
    from logitlens.remote import weights

    monkeypatch.setattr(weights, "cache_path", lambda repo_id: tmp_path / "head.safetensors")
    weights._ROOTS.clear()
    ndif.set_fault("none")
    yield ndif
    ndif.set_fault("none")
    weights._ROOTS.clear()


@pytest.fixture(scope="module")
def remote_tiny(ndif):
    return logitlens.load_model(TINY, remote=True, timeout=30)


@pytest.fixture(scope="module")
def local_tiny(tiny_dir):
    return logitlens.load_model(str(tiny_dir))


def _assert_equal_results(remote_result, local_result, tolerance=1e-6):
    compared = 0
    for name in ARRAYS:
        remote_values, local_values = getattr(remote_result, name), getattr(local_result, name)
        assert (remote_values is None) == (local_values is None), name
        if remote_values is not None:
            np.testing.assert_allclose(
                remote_values, local_values, rtol=0, atol=tolerance, err_msg=name
            )
            compared += 1
    assert compared >= 2
    assert remote_result.tokens == local_result.tokens


def _random_tuned_lens(model, path):
    from logitlens.lenses.tuned import TunedLens

    lens = TunedLens.identity(model)
    generator = torch.Generator().manual_seed(0)
    lens.weight.copy_(torch.randn(lens.weight.shape, generator=generator) * 0.05)
    lens.bias.copy_(torch.randn(lens.bias.shape, generator=generator) * 0.05)
    return lens.save(path)


def test_a_hub_model_loads_for_ndif_with_the_installed_transformers(healthy, remote_tiny):
    """nnsight 0.8.1 finds no tokenizer for a hub id with transformers >= 5.23 by itself."""
    import transformers

    assert remote_tiny.tokenizer is not None, transformers.__version__
    assert remote_tiny.tokenizer("hello")["input_ids"]
    assert remote_tiny.info().device == "NDIF"
    assert remote_tiny.module.lm_head.weight.device.type == "meta"


FULL = {"metrics": ["topk", "target", "entropy", "kl", "final_rank"], "targets": " current"}


@pytest.mark.parametrize(
    "options",
    [
        {"positions": "last"},
        {"positions": "all", **FULL},
        {"positions": "all", "lens": "raw", "include_embed": True, **FULL},
        {"positions": "0,-1", "layers": "0,-1", "batch_size": 1, **FULL},
    ],
    ids=["track-last", "all-positions", "raw-embed", "batches"],
)
def test_remote_analysis_equals_local(healthy, remote_tiny, local_tiny, options):
    remote_result = logitlens.analyze(remote_tiny, PROMPTS, **options)
    local_result = logitlens.analyze(local_tiny, PROMPTS, **options)
    _assert_equal_results(remote_result, local_result)


def _random_jacobian_lens(model, path):
    from logitlens.lenses import JacobianLens
    from logitlens.lenses.files import model_fingerprint

    fingerprint = model_fingerprint(model)
    shape = (fingerprint["n_layers"] + 1, fingerprint["d_model"], fingerprint["d_model"])
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.05
    return JacobianLens.from_jacobians(torch.eye(shape[-1]) + noise, fingerprint).save(path)


@pytest.mark.parametrize("kind", ["tuned", "jacobian"])
def test_remote_lens_with_weights_equals_local_and_never_travels(
    healthy, remote_tiny, local_tiny, tmp_path, kind
):
    """Residuals are saved remotely; the lens's weights stay here and are applied here."""
    make = _random_tuned_lens if kind == "tuned" else _random_jacobian_lens
    path = make(local_tiny, tmp_path / f"{kind}.safetensors")
    options = {"lens": kind, "tuned_path": str(path), "positions": "all", **FULL}
    before = len(healthy.entries())
    remote_result = logitlens.analyze(remote_tiny, PROMPTS, include_embed=True, **options)
    local_result = logitlens.analyze(local_tiny, PROMPTS, include_embed=True, **options)
    _assert_equal_results(remote_result, local_result)
    lens_bytes = path.stat().st_size
    (request,) = healthy.entries()[before:]
    assert request["up"] < lens_bytes / 4, (request, lens_bytes)
    assert (tmp_path / "head.safetensors").is_file()  # the unembedding, cached here


def test_remote_generation_equals_local_and_a_lens_with_weights_stays_here(
    healthy, remote_tiny, local_tiny, tmp_path
):
    """One generation trace on NDIF; a lens with weights is applied here, step by step."""
    from logitlens.generation import generate_lens

    path = _random_tuned_lens(local_tiny, tmp_path / "tuned.safetensors")
    uploaded = {}
    for lens in ("logit", "tuned"):
        tuned_path = str(path) if lens == "tuned" else None
        before = len(healthy.entries())
        remote = generate_lens(remote_tiny, PROMPTS[0], 4, lens=lens, k=3, tuned_path=tuned_path)
        (request,) = healthy.entries()[before:]
        uploaded[lens] = request["up"]
        local = generate_lens(local_tiny, PROMPTS[0], 4, lens=lens, k=3, tuned_path=tuned_path)
        assert remote.generated_ids == local.generated_ids and len(local.generated_ids) == 4
        _assert_equal_results(remote.lens_result, local.lens_result, tolerance=1e-5)
    assert uploaded["tuned"] < uploaded["logit"] + path.stat().st_size / 4, uploaded


# --- Failures: one line, exit code 2, quickly, never the key --------------------------------

FAULTS = {
    "auth_post": "rejected the API key",
    "auth_ws": "rejected the API key",
    "unavailable": "unavailable right now (HTTP 503",
    "server_error": "server error (HTTP 500",
    "job_error": "OutOfMemoryError",
    "drop": "dropped while job",
    "silent": "within the 1s timeout",
    "no_session": "within the 1s timeout",
}
SHORT_TIMEOUT = 1.0


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_failure_is_one_clear_line_soon_after_it_shows(ndif, remote_tiny, fault):
    from logitlens.errors import RemoteError

    ndif.set_fault(fault)
    try:
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            logitlens.analyze(remote_tiny, "hello there", timeout=SHORT_TIMEOUT)
        elapsed = time.monotonic() - started
    finally:
        ndif.set_fault("none")
    message = str(caught.value)
    assert FAULTS[fault] in message
    assert "\n" not in message and API_KEY not in message
    # The fault shows at once, or when the timeout runs out for a silent server.
    waited = SHORT_TIMEOUT if fault in ("silent", "no_session") else 0.0
    assert elapsed < waited + 2.0, (fault, elapsed)


def test_a_job_error_names_the_cause_and_keeps_the_server_traceback(ndif, remote_tiny):
    from logitlens.errors import RemoteError

    ndif.set_fault("job_error")
    try:
        with pytest.raises(RemoteError, match="lower --batch-size") as caught:
            logitlens.analyze(remote_tiny, "hello", timeout=5)
    finally:
        ndif.set_fault("none")
    assert "Traceback" in caught.value.server_traceback


def test_an_unreachable_host_is_named(healthy, remote_tiny, monkeypatch):
    from nnsight import CONFIG

    from logitlens.errors import RemoteError

    closed = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(CONFIG.API, "HOST", closed)
    started = time.monotonic()
    with pytest.raises(RemoteError, match=r"Cannot reach NDIF at .*connection refused"):
        logitlens.analyze(remote_tiny, "hello", timeout=5)
    assert time.monotonic() - started < 2.0
    with pytest.raises(RemoteError, match=f"Cannot reach NDIF at {closed}"):
        logitlens.load_model(TINY, remote=True)


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_model_ndif_does_not_host_is_refused_with_the_list(healthy):
    with pytest.raises(logitlens.errors.RemoteError, match=rf"not running on NDIF.*{TINY}"):
        logitlens.load_model("meta-llama/Llama-3.1-70B", remote=True)


def test_a_local_directory_with_remote_says_ndif_needs_a_hub_id(healthy, tiny_dir):
    with pytest.raises(logitlens.ModelLoadError, match="only the models it hosts, named by hub id"):
        logitlens.load_model(str(tiny_dir), remote=True)


# --- The CLI over the socket ---------------------------------------------------------------


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """``logitlens ARGS`` in-process through the real entry point: (exit code, stdout, stderr)."""
    from logitlens import cli

    monkeypatch.setattr(sys, "argv", ["logitlens", *args])
    capsys.readouterr()
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def _close(remote_value, local_value, path="") -> None:
    """JSON documents equal, numbers to 1e-6; the model's name and placement may differ."""
    if isinstance(remote_value, dict):
        assert remote_value.keys() == local_value.keys(), path
        for key in remote_value:
            if key not in ("model_name", "name", "device", "remote", "dtype", "key"):
                _close(remote_value[key], local_value[key], f"{path}.{key}")
    elif isinstance(remote_value, list):
        assert len(remote_value) == len(local_value), path
        for index, (first, second) in enumerate(zip(remote_value, local_value, strict=True)):
            _close(first, second, f"{path}[{index}]")
    elif isinstance(remote_value, float) or isinstance(local_value, float):
        assert remote_value == pytest.approx(local_value, abs=1e-6, nan_ok=True), path
    else:
        assert remote_value == local_value, path


PUN = "Why do electricians make good swimmers? Because they know the"
JSON_COMMANDS = {
    "info": ["info"],
    "top": ["top", PUN, "--positions", "all", "--metrics", "entropy,kl"],
    "track": ["track", PUN, "--target", " current", "--lens", "raw", "--layers", "embed,0:2"],
    "compare": ["compare", "--pair", f"{PUN}=> current", "--pair", "The river=> bank"],
    "demo": ["demo"],
}


@pytest.mark.parametrize("command", sorted(JSON_COMMANDS))
def test_cli_json_commands_over_ndif_equal_local(healthy, tiny_dir, capsys, monkeypatch, command):
    args = JSON_COMMANDS[command]
    code, remote_out, err = run_cli(
        capsys, monkeypatch, *args, "--model", TINY, "--remote", "--json", "--timeout", "30"
    )
    assert code == 0, err
    code, local_out, _ = run_cli(capsys, monkeypatch, *args, "--model", str(tiny_dir), "--json")
    assert code == 0
    _close(json.loads(remote_out), json.loads(local_out))  # stdout is exactly one document
    assert API_KEY not in remote_out + err


def test_cli_compare_out_and_tuned_lens_over_ndif_equal_local(
    healthy, tiny_dir, local_tiny, capsys, monkeypatch, tmp_path
):
    lens = _random_tuned_lens(local_tiny, tmp_path / "tuned.safetensors")
    base = ["compare", "--pair", f"{PUN}=> current", "--pair", "The river=> bank", "--json"]
    base += ["--lens", "tuned", "--tuned-path", str(lens), "--batch-size", "1"]
    remote_file, local_file = tmp_path / "remote.jsonl", tmp_path / "local.jsonl"
    code, remote_out, err = run_cli(
        capsys, monkeypatch, *base, "--model", TINY, "--remote", "--out", str(remote_file)
    )
    assert code == 0, err
    code, local_out, _ = run_cli(
        capsys, monkeypatch, *base, "--model", str(tiny_dir), "--out", str(local_file)
    )
    assert code == 0
    _close(json.loads(remote_out), json.loads(local_out))
    remote_header, *remote_records = map(json.loads, remote_file.read_text().splitlines())
    local_header, *local_records = map(json.loads, local_file.read_text().splitlines())
    # Same lens and options; the model is named differently (hub id vs directory) and
    # a remote model's weights are not here to hash.
    assert remote_header["lens"] == local_header["lens"]
    assert remote_header["options"] == local_header["options"]
    assert remote_header["model"]["weights_sha256"] is None
    _close(remote_records, local_records)


PICTURES = {
    "heatmap": ["heatmap", PUN, "--target", " current", "--out", "{dir}/h.png"],
    "grid": ["grid", PUN, "--metric", "entropy", "--out", "{dir}/g.png"],
    "report": ["report", PUN, "The river bank", "--target", " current", "--out", "{dir}/r.html"],
}


@pytest.mark.parametrize("command", sorted(PICTURES))
def test_cli_pictures_over_ndif_draw_the_local_numbers(
    healthy, tiny_dir, capsys, monkeypatch, tmp_path, command
):
    results = []
    real = analysis.analyze

    def recording(*args, **kwargs):
        results.append(real(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(analysis, "analyze", recording)
    args = [part.format(dir=tmp_path) for part in PICTURES[command]]
    code, _, err = run_cli(capsys, monkeypatch, *args, "--model", TINY, "--remote")
    assert code == 0, err
    code, _, err = run_cli(capsys, monkeypatch, *args, "--model", str(tiny_dir))
    assert code == 0, err
    _assert_equal_results(*results)


@pytest.mark.parametrize("fault", ["auth_post", "unavailable", "drop", "silent"])
def test_cli_failures_exit_2_with_one_line_and_no_key(ndif, capsys, monkeypatch, fault):
    ndif.set_fault(fault)
    try:
        code, out, err = run_cli(
            capsys,
            monkeypatch,
            "track",
            "hello",
            "--target",
            " x",
            "--model",
            TINY,
            "--remote",
            "--json",
            "--timeout",
            "1",
        )
    finally:
        ndif.set_fault("none")
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and FAULTS[fault] in lines[0], err
    assert "Traceback" not in err and out == ""
    assert API_KEY not in out + err


def test_cli_bad_key_on_the_websocket_exits_2(ndif, capsys, monkeypatch):
    ndif.set_fault("auth_ws")
    try:
        code, out, err = run_cli(
            capsys, monkeypatch, "top", "hello", "--model", TINY, "--remote", "--timeout", "5"
        )
    finally:
        ndif.set_fault("none")
    assert code == 2 and "rejected the API key (websocket: HTTP 401)" in err
    assert "login.ndif.us" in err and API_KEY not in out + err


def test_cli_remote_status_lists_hosted_models(healthy, capsys, monkeypatch):
    code, out, _ = run_cli(capsys, monkeypatch, "remote", "status", "--json")
    assert code == 0
    assert {m["repo_id"] for m in json.loads(out)} == {TINY, BUNDLED_ID}


def test_ctrl_c_says_interrupted_and_what_was_kept(tiny_dir, capsys, monkeypatch, tmp_path):
    calls = []
    real = analysis._run_batch

    def interrupted_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis, "_run_batch", interrupted_second_batch)
    out_file = tmp_path / "run.jsonl"
    code, _, err = run_cli(
        capsys,
        monkeypatch,
        "compare",
        "--pair",
        "a b=> c",
        "--pair",
        "d e=> f",
        "--batch-size",
        "1",
        "--model",
        str(tiny_dir),
        "--out",
        str(out_file),
    )
    assert code == 130
    assert "Interrupted" in err and f"kept in {out_file}" in err
    header, *records = out_file.read_text().splitlines()
    assert json.loads(header)["format"].startswith("logitlens-results")
    assert len(records) == 1  # the first batch, finished before the interrupt


@pytest.mark.bundled
def test_bundled_model_over_ndif_equals_local_with_every_lens(healthy, bundled, tmp_path):
    remote = logitlens.load_model(BUNDLED_ID, remote=True, timeout=120)
    lens = _random_tuned_lens(bundled, tmp_path / "tuned.safetensors")
    for options in ({"lens": "logit"}, {"lens": "tuned", "tuned_path": str(lens)}):
        kwargs = {"positions": "all", "include_embed": True, **FULL, **options}
        _assert_equal_results(
            logitlens.analyze(remote, PUN, **kwargs), logitlens.analyze(bundled, PUN, **kwargs)
        )
