"""The explorer's request checks, its answers (the library's own), its queue and its HTTP
server's rules, on a tiny random model served in-process on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import logitlens
from logitlens import InputError
from logitlens.explorer import AnalysisRequest, Explorer, available_lenses
from logitlens.explorer.app import byte_labels
from logitlens.explorer.server import ExplorerServer, check_binding

PUN = "Why do electricians make good swimmers? Because they know the"


@pytest.fixture
def explorer(wrap_tiny):
    model = wrap_tiny("llama")
    return Explorer(model, available_lenses(model))


@pytest.fixture
def serving(explorer):
    """``start(token=None)``: the explorer served on a free port; returns the server."""
    servers = []

    def start(token: str | None = None) -> ExplorerServer:
        server = ExplorerServer(explorer, "127.0.0.1", 0, token, log=lambda line: None)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def call(server, method, path, body=None, headers=None):
    """One HTTP request; returns (status, headers, body as JSON or text)."""
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=60)
    data = None if body is None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    connection.request(method, path, body=data, headers=sent)
    response = connection.getresponse()
    payload = response.read().decode()
    kind = response.getheader("Content-Type", "")
    connection.close()
    return (
        response.status,
        response,
        json.loads(payload) if kind.startswith("application/json") else payload,
    )


def test_requests_are_checked_field_by_field():
    request = AnalysisRequest.from_json({"prompts": PUN, "target": " current"})
    assert request.prompts == (PUN,) and request.positions == "all"
    assert request.metrics() == ["topk", "final_rank", "target_rank"]
    bad = [
        ([PUN], "must be a JSON object"),
        ({"prompts": [PUN], "file": "/etc/passwd"}, "Unknown request field"),
        ({"prompts": []}, "No prompts"),
        ({"prompts": ["  "]}, "empty"),
        ({"prompts": [PUN], "k": 0}, "k must be"),
        ({"prompts": [PUN], "k": "5"}, "k must be"),
        ({"prompts": [PUN], "lens": 3}, "'lens' must be text"),
        ({"prompts": [PUN], "metric": "colour"}, "Unknown grid metric"),
        ({"prompts": [PUN], "alternative": " water"}, "needs a target"),
        ({"prompts": [PUN], "positions": "x"}, "position"),
        ({"prompts": [PUN] * 17}, "at most 16"),
        ({"prompts": [PUN], "attribution": True}, "attribution view needs a target"),
        ({"prompts": [PUN], "target": " a", "attribution": "yes"}, "true or false"),
    ]
    for data, message in bad:
        with pytest.raises(InputError, match=message):
            AnalysisRequest.from_json(data)


def test_answers_are_the_library_call(explorer):
    request = AnalysisRequest.from_json(
        {
            "prompts": [PUN, "The capital of France is"],
            "lens": "raw",
            "target": " current",
            "metric": "entropy",
            "k": 4,
        }
    )
    answer = explorer.analyze(request)
    expected = logitlens.analyze(
        explorer.model,
        [PUN, "The capital of France is"],
        lens="raw",
        positions="all",
        k=4,
        targets=" current",
        metrics=["topk", "final_rank", "entropy", "target_rank"],
    )
    for name in ("top_ids", "top_probs", "entropy", "target_prob", "final_rank"):
        np.testing.assert_allclose(getattr(answer.result, name), getattr(expected, name))
    payload = answer.payload()
    assert payload["view"]["entries"][1]["prompt"] == "The capital of France is"
    assert payload["result"]["lens"] == "raw"
    assert explorer.kept(request) is answer


def test_the_attribution_view_is_the_library_attribution(explorer):
    request = AnalysisRequest.from_json(
        {"prompts": [PUN], "target": " current", "alternative": " water", "attribution": True}
    )
    shown = explorer.analyze(request).view()["attribution"]
    expected = logitlens.attribute(
        explorer.model, PUN, target=" current", alternative=" water"
    ).difference
    assert len(shown) == 1 and set(shown[0]["measures"]) == {"target", "difference"}
    difference = shown[0]["measures"]["difference"]
    np.testing.assert_allclose(difference["attention"], expected.attention[0, :, 0, 0], atol=1e-5)
    np.testing.assert_allclose(difference["mlp"], expected.mlp[0, :, 0, 0], atol=1e-5)
    assert difference["logit"] == pytest.approx(float(expected.logit[0, 0, 0]), abs=1e-5)
    without = explorer.analyze(AnalysisRequest.from_json({"prompts": [PUN]})).view()
    assert "attribution" not in without


def test_a_remote_model_answers_the_same(explorer, wrap_tiny):
    """``serve --remote``: the same request through NDIF's serialisation round trip."""
    remote = wrap_tiny("llama", remote="local")
    simulated = Explorer(remote, available_lenses(remote))
    assert simulated.info()["remote"] is True
    request = AnalysisRequest.from_json(
        {"prompts": [PUN], "target": " current", "attribution": True, "k": 3}
    )
    here, there = explorer.analyze(request), simulated.analyze(request)
    np.testing.assert_array_equal(there.result.top_ids, here.result.top_ids)
    np.testing.assert_allclose(there.result.target_prob, here.result.target_prob, atol=1e-5)
    np.testing.assert_allclose(
        there.view()["attribution"][0]["measures"]["target"]["mlp"],
        here.view()["attribution"][0]["measures"]["target"]["mlp"],
        atol=1e-4,
    )


def test_a_long_prompt_shows_its_last_window(explorer):
    explorer.window = 5
    answer = explorer.analyze(AnalysisRequest.from_json({"prompts": [PUN]}))
    length = len(answer.result.token_ids[0])
    assert answer.result.positions[0].tolist() == list(range(length - 5, length))


def test_requests_take_turns_and_the_queue_is_visible(explorer, monkeypatch):
    release = threading.Event()
    original = explorer._run

    def slow(request, lens):
        release.wait(30)
        return original(request, lens)

    monkeypatch.setattr(explorer, "_run", slow)
    request = AnalysisRequest.from_json({"prompts": [PUN]})
    threads = [threading.Thread(target=explorer.analyze, args=(request,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.time() + 30
    while explorer.status()["waiting"] != 2 and time.time() < deadline:
        time.sleep(0.01)
    status = explorer.status()
    assert status["waiting"] == 2 and "1 prompt(s), logit lens" in status["running"]
    release.set()
    for thread in threads:
        thread.join(60)
    assert explorer.status() == {"running": None, "progress": "", "waiting": 0}


def test_tokens_that_are_part_of_a_character_show_their_bytes():
    pieces = {1: "<0xE2>", 2: "\u0120\u00e2", 3: "\u2581word"}

    class Tokenizer:
        def convert_ids_to_tokens(self, token_id):
            return pieces[token_id]

    vocab = {1: "\ufffd", 2: " \ufffd", 3: "\ufffd?", 4: " fine"}
    # SentencePiece byte token; GPT-2 byte-level piece (Ġ is the space, â the byte E2).
    assert byte_labels(Tokenizer(), vocab) == {"1": "<0xE2>", "2": " <0xE2>"}


def test_the_server_answers_and_refuses_bad_input(serving, explorer):
    server = serving()
    status, response, page = call(server, "GET", "/")
    assert status == 200 and "default-src 'none'" in response.getheader("Content-Security-Policy")
    assert "<script src" not in page and "showReport" in page
    status, _, info = call(server, "GET", "/api/info")
    assert info["lenses"] == ["logit", "raw"] and info["n_layers"] == explorer.model.n_layers

    status, _, answer = call(server, "POST", "/api/analyze", {"prompts": [PUN], "k": 3})
    assert status == 200
    expected = logitlens.analyze(
        explorer.model, PUN, positions="all", k=3, metrics=["topk", "final_rank"]
    )
    np.testing.assert_array_equal(np.array(answer["result"]["top_ids"]), expected.top_ids)

    status, response, report = call(server, "POST", "/api/report", {"prompts": [PUN], "k": 3})
    assert status == 200 and "attachment" in response.getheader("Content-Disposition")
    assert 'id="report-data"' in report

    for body, message in [
        ({"prompts": [" "]}, "Prompt 0 is empty"),
        ({"prompts": [PUN], "target": "id:99999999"}, "outside the vocabulary"),
        ({"prompts": [PUN], "lens": "tuned"}, "Unknown lens 'tuned'"),
        ({"prompts": ["word " * 5000]}, "longer than the model's context"),
    ]:
        status, _, error = call(server, "POST", "/api/analyze", body)
        assert status == 400 and message in error["error"] and "\n" not in error["error"]
    status, _, error = call(server, "POST", "/api/analyze", None, {"Content-Type": "text/plain"})
    assert status == 400 and "JSON" in error["error"]
    assert call(server, "GET", "/nothing")[0] == 404
    assert call(server, "POST", "/api/analyze", {"prompts": [PUN]})[0] == 200  # still serving


def test_the_server_only_answers_its_own_page(serving):
    server = serving()
    port = server.server_address[1]
    rebound = call(server, "GET", "/api/info", headers={"Host": f"evil.example:{port}"})
    assert rebound[0] == 403
    cross_site = call(
        server, "POST", "/api/analyze", {"prompts": [PUN]}, {"Origin": "http://evil.example"}
    )
    assert cross_site[0] == 403
    same_site = call(
        server, "POST", "/api/analyze", {"prompts": [PUN]}, {"Origin": f"http://127.0.0.1:{port}"}
    )
    assert same_site[0] == 200


def test_a_token_is_needed_when_the_server_has_one(serving):
    server = serving(token="s3cret")
    assert server.url.endswith("/?token=s3cret")
    assert call(server, "GET", "/")[0] == 403
    assert call(server, "GET", "/?token=wrong")[0] == 403
    assert call(server, "GET", "/?token=s3cret")[0] == 200
    headers = {"X-Logitlens-Token": "s3cret"}
    assert call(server, "POST", "/api/analyze", {"prompts": [PUN]}, headers)[0] == 200


def test_a_public_address_needs_a_token():
    check_binding("127.0.0.1", None)
    check_binding("::1", None)
    check_binding("localhost", None)
    check_binding("0.0.0.0", "s3cret")
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        with pytest.raises(InputError, match="--token"):
            check_binding(host, None)


def test_serve_refuses_a_public_address_without_a_token():
    completed = subprocess.run(
        [sys.executable, "-m", "logitlens", "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("Error: ") and "--token" in completed.stderr
    assert "Traceback" not in completed.stderr
