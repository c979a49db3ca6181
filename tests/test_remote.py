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
import contextlib
import inspect
import json
import re
import sys
import textwrap
import time
import warnings

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


# --- Over a real socket: NDIF's own server -----------------------------------------------
#
# ``ndif_real`` (tests/conftest.py, tests/ndif_stack.py) is NDIF's API service, Redis, an
# S3 store and NDIF's dispatcher and model actor on CPU, gated on client versions as a
# public deployment is. ``hub`` (tests/ndif_server.py) serves the hosted models' config,
# tokenizer and safetensors as the Hugging Face hub would, and is the fault server for
# the few faults NDIF's server cannot be made to produce (see docs/how-to/ndif.md).

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
def tiny_dir(ndif_models):
    return ndif_models["tiny-llama"]


@pytest.fixture(scope="module")
def hub(ndif_models, tmp_path_factory):
    """The test hub (and fault server), with the Hugging Face hub clients pointed at it."""
    import huggingface_hub.constants as hub_constants
    import huggingface_hub.hf_api
    import transformers.utils.hub
    from ndif_server import launch
    from nnsight import CONFIG

    tiny = ndif_models["tiny-llama"]
    repos = {TINY: tiny, BUNDLED_ID: logitlens.loading.bundled_model_dir()}
    for repo_id in ("drifted", "tiny-llama-warm", "tiny-llama-cold", "unlisted"):
        repos[f"test-org/{repo_id}"] = tiny
    server = launch(repos, api_key=API_KEY, idle_timeout=900)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hub_constants, "ENDPOINT", server.url)
        # The module-level HfApi (model_info, list_repo_tree ...) read ENDPOINT when it was
        # built, which may have been before this fixture ran.
        patch.setattr(huggingface_hub.hf_api.api, "endpoint", server.url)
        patch.setattr(transformers.utils.hub, "_hf_api", None)  # its shared HfApi, likewise
        template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
        patch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        patch.setattr(CONFIG.API, "APIKEY", API_KEY)
        patch.setenv("NDIF_API_KEY", API_KEY)
        patch.setenv("HF_ENDPOINT", server.url)
        yield server
    server.stop()


@pytest.fixture(scope="module")
def ndif(hub, ndif_real):
    """NDIF's real API service (gated on client versions), reached as NDIF_HOST."""
    from nnsight import CONFIG

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CONFIG.API, "HOST", ndif_real.api("gated"))
        yield ndif_real


@pytest.fixture
def healthy(ndif, tmp_path, monkeypatch):
    """The real server, and a fresh cache for the unembeddings fetched from the hub."""
    from logitlens.remote import weights

    monkeypatch.setattr(weights, "cache_path", lambda repo_id: tmp_path / "head.safetensors")
    weights._ROOTS.clear()
    yield ndif
    weights._ROOTS.clear()


@pytest.fixture
def uploads(monkeypatch):
    """The size of every request body nnsight's client uploads (``POST /request``)."""
    from nnsight.intervention.backends.remote import RemoteBackend

    sizes: list[int] = []
    real = RemoteBackend._post

    def recording(self, request, blob):
        sizes.append(len(blob))
        return real(self, request, blob)

    monkeypatch.setattr(RemoteBackend, "_post", recording)
    return sizes


@pytest.fixture
def faulty(hub, monkeypatch):
    """The fault server as NDIF_HOST, for the faults NDIF's own server cannot produce."""
    from nnsight import CONFIG

    monkeypatch.setattr(CONFIG.API, "HOST", hub.url)
    hub.set_fault("none")
    yield hub
    hub.set_fault("none")


@pytest.fixture(scope="module")
def remote_tiny(ndif):
    return logitlens.load_model(TINY, remote=True, timeout=60)


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


def test_remote_attribution_equals_local(healthy, remote_tiny, local_tiny):
    """Direct logit attribution in NDIF's trace, together with the lens."""
    options = {
        "targets": " current",
        "alternatives": " the",
        "attribution": True,
        "heads": True,
        "positions": "all",
        **FULL,
    }
    remote_result = logitlens.analyze(remote_tiny, PROMPTS, **options)
    local_result = logitlens.analyze(local_tiny, PROMPTS, **options)
    _assert_equal_results(remote_result, local_result)
    for measure in ("target", "difference"):
        for name in ("embed", "components", "heads", "head_bias", "constant", "logit"):
            np.testing.assert_allclose(
                getattr(getattr(remote_result.attribution, measure), name),
                getattr(getattr(local_result.attribution, measure), name),
                atol=1e-5,
                err_msg=f"{measure}.{name}",
            )


def _random_jacobian_lens(model, path):
    from logitlens.lenses import JacobianLens
    from logitlens.lenses.files import model_fingerprint

    fingerprint = model_fingerprint(model)
    shape = (fingerprint["n_layers"] + 1, fingerprint["d_model"], fingerprint["d_model"])
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.05
    return JacobianLens.from_jacobians(torch.eye(shape[-1]) + noise, fingerprint).save(path)


def _imported_tuned_lens(model, path):
    """A lens in tuned-lens's own format (config.json + params.pt), imported."""
    from test_lens_imports import _tuned_lens_folder

    from logitlens.lenses.imports import import_lens

    folder, _ = _tuned_lens_folder(path.parent, model, seed=5)
    return import_lens(folder, model).save(path)


LENS_FILES = {
    "tuned": _random_tuned_lens,
    "jacobian": _random_jacobian_lens,
    "imported": _imported_tuned_lens,
}


# --- The client sends what nnsight sends ---------------------------------------------------


def test_the_upload_carries_every_header_nnsight_sends(monkeypatch):
    """nnsight's own RemoteBackend._post and logitlens's, recorded side by side."""
    import httpx
    from nnsight.intervention.backends.remote import RemoteBackend
    from nnsight.schema.request import RequestModel

    from logitlens.remote import NdifBackend

    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"id": "j", "status": "RECEIVED", "description": ""})

    real_client = httpx.Client

    def recording_client(*args, **kwargs):
        return real_client(*args, transport=httpx.MockTransport(answer), **kwargs)

    monkeypatch.setattr(httpx, "Client", recording_client)
    key = 'nnsight.modeling.transformers.TransformersModel:{"repo_id": "a/b"}'
    host = "http://127.0.0.1:9"
    RemoteBackend(key, host=host, api_key=API_KEY)._post(RequestModel(model_key=key), b"blob")
    ours = NdifBackend(key, host=host, api_key=API_KEY, timeout=10)
    ours.deadline = time.monotonic() + 10
    ours._post(RequestModel(model_key=key), b"blob")
    theirs, mine = sent[0].headers, sent[1].headers
    varying = {"ndif-timestamp", "content-type", "content-length"}  # the time, the boundary
    for name in theirs:
        assert name in mine, f"logitlens's upload lacks nnsight's {name!r} header"
        if name not in varying:
            assert mine[name] == theirs[name], name
    assert {"nnsight-version", "python-version", "ndif-api-key"} <= set(mine)
    assert sent[0].content.split(b"\r\n", 1)[1] and sent[1].url == sent[0].url


# --- Results equal local, through NDIF's own server ---------------------------------------


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


@pytest.mark.parametrize("gate", ["open", "gated"])
@pytest.mark.parametrize("blocking", ["1", "0"], ids=["blocking", "non-blocking"])
def test_remote_equals_local_with_gating_on_and_off_blocking_or_polling(
    healthy, remote_tiny, local_tiny, monkeypatch, gate, blocking
):
    """Non-blocking: no websocket; every status and the result go through NDIF's object
    store (S3), polled with ``GET /response/<id>``."""
    from nnsight import CONFIG

    from logitlens.remote import BLOCKING_ENV, NdifBackend

    monkeypatch.setattr(CONFIG.API, "HOST", healthy.api(gate))
    monkeypatch.setenv(BLOCKING_ENV, blocking)
    backends = []
    real = NdifBackend.request

    def recording(self, *args, **kwargs):
        backends.append(self)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(NdifBackend, "request", recording)
    options = {"positions": "all", **FULL}
    remote_result = logitlens.analyze(remote_tiny, PROMPTS, **options)
    _assert_equal_results(remote_result, logitlens.analyze(local_tiny, PROMPTS, **options))
    assert backends and all(b.waits_on_socket == (blocking == "1") for b in backends)
    assert all(b.received_bytes > 0 for b in backends)


def test_a_blocking_result_past_the_inline_cap_comes_through_the_object_store(
    healthy, remote_tiny, local_tiny, monkeypatch
):
    """NDIF hands a blocking request's result back on the socket only up to its Redis
    pubsub limit (256 KB on the test server, ``RedisProvider.max_publish_bytes``); past it
    the model actor uploads it to the S3 store and the client downloads a presigned url."""
    from nnsight import CONFIG

    from logitlens.remote import BLOCKING_ENV, NdifBackend

    monkeypatch.setattr(CONFIG.API, "HOST", healthy.api("open"))
    monkeypatch.setenv(BLOCKING_ENV, "1")
    arrived: list[str] = []
    real = NdifBackend.download_result

    def recording(self, url):
        arrived.append("inline" if isinstance(url, (bytes, bytearray)) else "url")
        return real(self, url)

    monkeypatch.setattr(NdifBackend, "download_result", recording)
    small = logitlens.analyze(remote_tiny, PROMPTS[1], k=5)
    _assert_equal_results(small, logitlens.analyze(local_tiny, PROMPTS[1], k=5))
    assert arrived == ["inline"]

    # Every token's probability at every layer and position of 32 prompts in one batch:
    # about 500 KB after NDIF's zstd (16 prompts came to 248 KB, just under the cap).
    prompts, vocab = PROMPTS * 16, remote_tiny.vocab_size
    options = {"positions": "all", "k": vocab, "batch_size": len(prompts)}
    big = logitlens.analyze(remote_tiny, prompts, **options)
    _assert_equal_results(big, logitlens.analyze(local_tiny, prompts, **options))
    assert arrived == ["inline", "url"]


@pytest.mark.parametrize("kind", sorted(LENS_FILES))
def test_remote_lens_with_weights_equals_local_and_never_travels(
    healthy, remote_tiny, local_tiny, tmp_path, uploads, kind
):
    """Residuals are saved remotely; the lens's weights stay here and are applied here."""
    path = LENS_FILES[kind](local_tiny, tmp_path / f"{kind}.safetensors")
    lens = "jacobian" if kind == "jacobian" else "tuned"
    options = {"lens": lens, "tuned_path": str(path), "positions": "all", **FULL}
    remote_result = logitlens.analyze(remote_tiny, PROMPTS, include_embed=True, **options)
    local_result = logitlens.analyze(local_tiny, PROMPTS, include_embed=True, **options)
    _assert_equal_results(remote_result, local_result)
    lens_bytes = path.stat().st_size
    assert len(uploads) == 1 and uploads[0] < lens_bytes / 4, (uploads, lens_bytes)
    assert (tmp_path / "head.safetensors").is_file()  # the unembedding, cached here


@pytest.mark.parametrize("lens", ["logit", "tuned"])
def test_remote_generation_equals_local(healthy, remote_tiny, local_tiny, tmp_path, lens):
    from logitlens.generation import generate_lens

    options = {"k": 3}
    if lens == "tuned":
        path = _random_tuned_lens(local_tiny, tmp_path / "tuned.safetensors")
        options.update(lens="tuned", tuned_path=str(path))
    remote = generate_lens(remote_tiny, PROMPTS[0], 4, **options)
    local = generate_lens(local_tiny, PROMPTS[0], 4, **options)
    assert remote.generated_ids == local.generated_ids
    _assert_equal_results(remote.lens_result, local.lens_result)


def test_a_lens_with_weights_stays_here_in_a_remote_generation(
    healthy, remote_tiny, local_tiny, tmp_path, uploads
):
    """generate_lens's trace body names no lens with weights: its request is the size of
    the logit lens's, not that plus the lens."""
    from logitlens.generation import generate_lens

    path = _random_tuned_lens(local_tiny, tmp_path / "tuned.safetensors")
    generate_lens(remote_tiny, PROMPTS[0], 2, k=3)
    generate_lens(remote_tiny, PROMPTS[0], 2, k=3, lens="tuned", tuned_path=str(path))
    logit, tuned = uploads
    assert tuned < logit + path.stat().st_size / 4, (uploads, path.stat().st_size)


@pytest.mark.parametrize("lens", ["logit", "tuned"])
def test_remote_generations_share_one_job_and_equal_local(
    healthy, remote_tiny, local_tiny, tmp_path, uploads, lens
):
    """generate_lens_many: an nnsight session, so NDIF runs every generation in one job."""
    from logitlens.generation import generate_lens, generate_lens_many

    options = {"k": 2}
    if lens == "tuned":
        options.update(
            lens="tuned", tuned_path=str(_random_tuned_lens(local_tiny, tmp_path / "t.safetensors"))
        )
    prompts = [*PROMPTS, "a b c"]
    remote = generate_lens_many(remote_tiny, prompts, 3, **options)
    assert len(uploads) == 1
    for prompt, got in zip(prompts, remote, strict=True):
        expected = generate_lens(local_tiny, prompt, 3, **options)
        assert got.generated_ids == expected.generated_ids
        _assert_equal_results(got.lens_result, expected.lens_result)


# --- Versions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ("new-nnsight", r"needs nnsight 99\.0 or newer .*pip install --upgrade logitlens nnsight"),
        ("new-python", r"does not accept Python 3\.\d+.* needs Python 3\.99 or newer"),
    ],
)
def test_a_client_ndif_refuses_is_told_what_to_upgrade(
    ndif, remote_tiny, capsys, monkeypatch, gate, expected
):
    """NDIF's own 400 (ndif/services/api/versioning.py), as one line and exit code 2."""
    from nnsight import CONFIG

    ndif.start_apis(("new-nnsight", "new-python"))  # side by side, once
    monkeypatch.setattr(CONFIG.API, "HOST", ndif.api(gate))
    with pytest.raises(logitlens.errors.RemoteError, match=expected) as caught:
        logitlens.analyze(remote_tiny, "hello", timeout=30)
    assert "\n" not in str(caught.value) and "report it" not in str(caught.value)
    code, out, err = run_cli(
        capsys, monkeypatch, "top", "hello", "--model", TINY, "--remote", "--timeout", "30"
    )
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert code == 2 and len(lines) == 1 and re.search(expected, lines[0]), err
    assert "Traceback" not in err and API_KEY not in out + err


def _set_env_document(stack, packages: dict) -> None:
    """NDIF's cached /env (what its dispatcher stores for the API), with these versions."""
    import sys as system

    document = {"python_version": system.version, "packages": packages}
    stack.redis("SET", "env", json.dumps(document), "EX", "600")


def test_a_version_mismatch_is_one_warning_and_remote_status_shows_it(ndif, capsys, monkeypatch):
    from importlib.metadata import version

    from logitlens.remote import versions

    monkeypatch.setattr(versions, "_CHECKED", {})
    ours = {name: version(name) for name in ("nnsight", "transformers", "torch")}
    try:
        code, out, _ = run_cli(capsys, monkeypatch, "remote", "status", "--json")
        assert code == 0
        environment = json.loads(out)["environment"]  # NDIF's own env(): the same packages
        assert all(entry["match"] for entry in environment["packages"].values()), environment
        assert set(environment["packages"]) == set(ours)
        _set_env_document(ndif, {**ours, "transformers": "5.0.0"})
        with pytest.warns(versions.VersionWarning) as warned:
            logitlens.load_model(TINY, remote=True)
        (message,) = [str(w.message) for w in warned if w.category is versions.VersionWarning]
        assert "NDIF runs transformers 5.0.0" in message and "\n" not in message
        assert f"this client has transformers {ours['transformers']}" in message
        code, out, _ = run_cli(capsys, monkeypatch, "remote", "status")
        assert code == 0 and "DIFFERENT" in out and "5.0.0" in out
    finally:
        ndif.redis("DEL", "env")


def test_the_environment_comparison_is_nnsights(ndif, monkeypatch):
    """Same verdicts as nnsight.compare() on the critical packages."""
    import nnsight.ndif

    from logitlens.remote.versions import compare_environment

    ours = compare_environment()
    theirs = nnsight.ndif.compare()
    for name, (local, remote) in ours.packages.items():
        assert theirs.packages[name]["remote"] == remote
        assert theirs.packages[name]["local"] == local
    assert ours.remote_python == theirs.remote_python


# --- Hosting, as NDIF's controller reports it ----------------------------------------------


def test_warm_and_cold_models_are_served_with_one_note(healthy, local_tiny, recwarn):
    """WARM (parked in CPU memory) and COLD (downloaded) entries in the controller's own
    format are not refused: NDIF serves them, after restoring or deploying."""
    from logitlens.remote.hosting import HostingWarning

    for repo_id, expected in (
        ("test-org/tiny-llama-warm", "WARM on NDIF .*may take a moment"),
        ("test-org/tiny-llama-cold", "COLD on NDIF .*discuss.ndif.us.*Sending the job anyway"),
    ):
        recwarn.clear()
        model = logitlens.load_model(repo_id, remote=True, timeout=60)
        notes = [str(w.message) for w in recwarn if w.category is HostingWarning]
        assert len(notes) == 1 and re.search(expected, notes[0]), notes
        _assert_equal_results(
            logitlens.analyze(model, PROMPTS, positions="all"),
            logitlens.analyze(local_tiny, PROMPTS, positions="all"),
        )


def test_a_model_ndif_does_not_list_is_sent_and_ndif_answers(healthy, capsys, monkeypatch):
    code, out, err = run_cli(
        capsys, monkeypatch, "top", "hello", "--model", "test-org/unlisted", "--remote"
    )
    assert code == 2 and out == ""
    assert re.search(r"Warning: test-org/unlisted is not listed by NDIF.*running now: .*", err)
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "failed: Could not deploy this model" in lines[0], err


STATUS_DOCUMENTS = {
    "hot": {
        "0:ModelActor:k": {
            "application_state": "RUNNING",
            "deployment_level": "HOT",
            "model_key": "k",
            "repo_id": "a/hot",
            "revision": "main",
        }
    },
    "warm": {"0:ModelActor:k": {"deployment_level": "WARM", "model_key": "k", "repo_id": "a/warm"}},
    "cold": {"a/cold": {"deployment_level": "COLD", "repo_id": "a/cold"}},
    "deploying": {
        "0:ModelActor:k": {
            "application_state": "DEPLOYING",
            "deployment_level": "HOT",
            "repo_id": "a/deploying",
        }
    },
}


def test_hosting_notes_for_each_controller_state(ndif, monkeypatch):
    """Status documents in the controller's format, served by NDIF's API from its cache."""
    from logitlens.remote.hosting import hosted_models, hosting_note

    entries = {}
    for name, deployments in STATUS_DOCUMENTS.items():
        for key, value in deployments.items():
            entries[f"{name}:{key}"] = value
    ndif.redis("SET", "status", json.dumps({"deployments": entries, "cluster": {}}), "EX", "600")
    try:
        models = {m.repo_id: m for m in hosted_models()}
    finally:
        ndif.redis("DEL", "status")
    assert hosting_note("a/hot", list(models.values())) is None
    assert "may take a moment" in hosting_note("a/warm", list(models.values()))
    assert "COLD" in hosting_note("a/cold", list(models.values()))
    assert "DEPLOYING" in hosting_note("a/deploying", list(models.values()))
    assert "not listed" in hosting_note("a/none", list(models.values()))
    assert [m.repo_id for m in models.values()][:1] == ["a/hot"]
    assert all("\n" not in (hosting_note(r, list(models.values())) or "") for r in models)


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"<html>hello</html>", "not JSON"), (b'[{"repo_id": "a/b"}]', "no 'deployments'")],
)
def test_a_status_endpoint_that_is_not_ndifs_is_one_line(monkeypatch, body, why):
    import http.server
    import threading

    from nnsight import CONFIG

    from logitlens.remote.hosting import hosted_models

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(CONFIG.API, "HOST", f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(logitlens.errors.RemoteError, match=why) as caught:
            hosted_models()
    finally:
        server.shutdown()
    assert "did not answer like NDIF" in str(caught.value) and "\n" not in str(caught.value)


def test_an_unreachable_hub_is_one_line_within_seconds(ndif, monkeypatch):
    import huggingface_hub.constants as hub_constants

    closed = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setattr(hub_constants, "ENDPOINT", closed)
    monkeypatch.setenv("HF_ENDPOINT", closed)
    started = time.monotonic()
    with pytest.raises(logitlens.ModelLoadError, match="Cannot reach the Hugging Face hub"):
        logitlens.load_model("test-org/never-cached", remote=True)
    assert time.monotonic() - started < 5.0


# --- Failures: one line, exit code 2, quickly, never the key --------------------------------

# Faults NDIF's own server produces, and how: an unavailable compute backend (the
# dispatcher's ``ray:connected`` flag gone), a job failing on the server (a model whose
# module tree differs from the client's), versions (above).
REAL_FAULTS = {
    "unavailable": "unavailable right now (HTTP 503",
    "job_error": "architecture on this server doesn't match",
}
# Faults it cannot be made to produce here, from tests/ndif_server.py: a rejected key
# (NDIF checks keys against Postgres, not run here), an internal error, a dropped or
# silent connection, a session id that never comes, and an out-of-memory job (no GPU).
IMITATED_FAULTS = {
    "auth_post": "rejected the API key",
    "auth_ws": "rejected the API key",
    "server_error": "server error (HTTP 500",
    "job_error": "OutOfMemoryError",
    "drop": "dropped while job",
    "silent": "within the 1s timeout",
    "no_session": "within the 1s timeout",
}
SHORT_TIMEOUT = 1.0


@contextlib.contextmanager
def real_fault(stack, fault: str):
    """Make NDIF's server fail the way ``fault`` names (a job error needs no switch:
    ``test-org/drifted`` always fails on the server)."""
    if fault == "unavailable":
        stack.redis("DEL", "ray:connected")
        try:
            yield
        finally:
            stack.redis("SET", "ray:connected", "1")
    else:
        yield


@pytest.mark.parametrize("fault", sorted(REAL_FAULTS))
def test_each_real_server_failure_is_one_clear_line(healthy, fault):
    repo_id = "test-org/drifted" if fault == "job_error" else TINY
    model = logitlens.load_model(repo_id, remote=True, timeout=30)
    started = time.monotonic()
    with real_fault(healthy, fault), pytest.raises(logitlens.errors.RemoteError) as caught:
        logitlens.analyze(model, "hello there")
    message = str(caught.value)
    assert REAL_FAULTS[fault] in message, message
    assert "\n" not in message and API_KEY not in message
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("fault", sorted(IMITATED_FAULTS))
def test_each_imitated_failure_is_one_clear_line_soon_after_it_shows(faulty, remote_tiny, fault):
    from logitlens.errors import RemoteError

    faulty.set_fault(fault)
    started = time.monotonic()
    with pytest.raises(RemoteError) as caught:
        logitlens.analyze(remote_tiny, "hello there", timeout=SHORT_TIMEOUT)
    elapsed = time.monotonic() - started
    message = str(caught.value)
    assert IMITATED_FAULTS[fault] in message
    assert "\n" not in message and API_KEY not in message
    # The fault shows at once, or when the timeout runs out for a silent server.
    waited = SHORT_TIMEOUT if fault in ("silent", "no_session") else 0.0
    assert elapsed < waited + 2.0, (fault, elapsed)


def test_a_job_error_names_the_cause_and_keeps_the_server_traceback(faulty, remote_tiny):
    from logitlens.errors import RemoteError

    faulty.set_fault("job_error")
    with pytest.raises(RemoteError, match="lower --batch-size") as caught:
        logitlens.analyze(remote_tiny, "hello", timeout=5)
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


def test_a_local_directory_with_remote_says_ndif_needs_a_hub_id(healthy, tiny_dir):
    with pytest.raises(logitlens.ModelLoadError, match="only the models it hosts, named by hub id"):
        logitlens.load_model(str(tiny_dir), remote=True)


# --- The CLI over the socket ---------------------------------------------------------------


def _print_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """``logitlens ARGS`` in-process through the real entry point: (exit code, stdout, stderr)."""
    from logitlens import cli

    monkeypatch.setattr(sys, "argv", ["logitlens", *args])
    # Outside pytest Python prints warnings (in the CLI's one-line format); pytest records
    # them instead, so print them here as Python would.
    monkeypatch.setattr(warnings, "showwarning", _print_warning)
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
            if key not in ("model_name", "name", "device", "remote", "dtype", "key", "model"):
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
    "generate": ["generate", PUN, "-n", "3"],
}


@pytest.mark.parametrize("command", sorted(JSON_COMMANDS))
def test_cli_json_commands_over_ndif_equal_local(healthy, tiny_dir, capsys, monkeypatch, command):
    args = JSON_COMMANDS[command]
    code, remote_out, err = run_cli(
        capsys, monkeypatch, *args, "--model", TINY, "--remote", "--json", "--timeout", "60"
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


@pytest.mark.parametrize(
    "lens",
    ["logit", pytest.param("jacobian", marks=pytest.mark.slow), "generate"],
)
def test_cli_study_over_ndif_equals_local(
    healthy, tiny_dir, local_tiny, capsys, monkeypatch, tmp_path, uploads, lens
):
    """Jobs: one per batch, and one more per batch for its generations (a session)."""
    import pandas as pd
    from study_items import make_items, write_items

    from logitlens.studies import StudyResult

    data = write_items(make_items(12), tmp_path / "items.jsonl")
    args = ["study", "run", str(data), "--batch-size", "4", "--no-progress", "--json"]
    if lens == "jacobian":
        path = _random_jacobian_lens(local_tiny, tmp_path / "j.safetensors")
        args += ["--lens", "jacobian", "--lens-path", str(path)]
    if lens == "generate":
        args += ["--generate", "2"]
    remote_dir, local_dir = tmp_path / "remote", tmp_path / "local"
    code, _, err = run_cli(
        capsys, monkeypatch, *args, "--model", TINY, "--remote", "--out", str(remote_dir)
    )
    assert code == 0, err
    assert len(uploads) == 3 * (2 if lens == "generate" else 1)  # 12 items, batches of 4
    code, _, err = run_cli(
        capsys, monkeypatch, *args, "--model", str(tiny_dir), "--out", str(local_dir)
    )
    assert code == 0, err
    remote, local = StudyResult.load(remote_dir), StudyResult.load(local_dir)
    assert remote.complete and local.complete
    pd.testing.assert_frame_equal(remote.items, local.items, check_exact=False, atol=1e-6)
    pd.testing.assert_frame_equal(remote.layers, local.layers, check_exact=False, atol=1e-6)


@pytest.mark.parametrize("fault", ["auth_post", "drop", "silent"])
def test_cli_failures_exit_2_with_one_line_and_no_key(faulty, capsys, monkeypatch, fault):
    faulty.set_fault(fault)
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
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and IMITATED_FAULTS[fault] in lines[0], err
    assert "Traceback" not in err and out == ""
    assert API_KEY not in out + err


def test_cli_unavailable_ndif_exits_2(healthy, capsys, monkeypatch):
    with real_fault(healthy, "unavailable"):
        code, out, err = run_cli(
            capsys, monkeypatch, "top", "hello", "--model", TINY, "--remote", "--timeout", "5"
        )
    assert code == 2 and out == ""
    assert "unavailable right now (HTTP 503" in err and "Traceback" not in err


def test_cli_bad_key_on_the_websocket_exits_2(faulty, capsys, monkeypatch):
    faulty.set_fault("auth_ws")
    code, out, err = run_cli(
        capsys, monkeypatch, "top", "hello", "--model", TINY, "--remote", "--timeout", "5"
    )
    assert code == 2 and "rejected the API key (websocket: HTTP 401)" in err
    assert "login.ndif.us" in err and API_KEY not in out + err


def test_cli_remote_status_lists_hosted_models(healthy, capsys, monkeypatch):
    code, out, _ = run_cli(capsys, monkeypatch, "remote", "status", "--json")
    assert code == 0
    models = {m["repo_id"]: m for m in json.loads(out)["models"]}
    assert {TINY, BUNDLED_ID, "test-org/tiny-llama-warm", "test-org/tiny-llama-cold"} <= set(models)
    assert models[TINY]["level"] == "HOT" and models[TINY]["state"] == "RUNNING"
    assert models["test-org/tiny-llama-warm"]["level"] == "WARM"
    assert models["test-org/tiny-llama-cold"]["level"] == "COLD"
    code, out, _ = run_cli(capsys, monkeypatch, "remote", "status")
    assert code == 0 and "nnsight" in out and "transformers" in out and "torch" in out


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
    remote = logitlens.load_model(BUNDLED_ID, remote=True, timeout=300)
    lens = _random_tuned_lens(bundled, tmp_path / "tuned.safetensors")
    for options in ({"lens": "logit"}, {"lens": "tuned", "tuned_path": str(lens)}):
        kwargs = {"positions": "all", "include_embed": True, **FULL, **options}
        _assert_equal_results(
            logitlens.analyze(remote, PUN, **kwargs), logitlens.analyze(bundled, PUN, **kwargs)
        )
