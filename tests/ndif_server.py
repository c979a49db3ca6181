"""The test hub, and an NDIF imitation for the faults NDIF's own server cannot produce.

The remote tests run against NDIF's real server (``tests/ndif_stack.py``). This
server is what remains of the project's earlier loopback imitation, for two jobs:

- a minimal Hugging Face hub (``HF_ENDPOINT``): ``/api/models/<id>``, its tree, and
  ``/<id>/resolve/<rev>/<file>`` with HTTP ranges, so a hub id resolves offline (the
  client builds its meta model from the config and tokenizer, and reads a hosted
  model's unembedding with range requests);
- faults, set with ``POST /_control/fault {"fault": NAME}``: ``auth_post`` /
  ``auth_ws`` (NDIF checks keys against Postgres, which the tests do not run),
  ``server_error`` (an internal 500), ``drop``, ``silent``, ``no_session`` (a socket
  that closes, stays silent, or never sends a session id), ``job_error`` (a CUDA
  out-of-memory error: there is no GPU here), ``queued``, ``unavailable``, ``none``.

It speaks nnsight 0.8.1's client protocol: websocket ``/subscribe``, multipart
``POST /request``, ``GET /response/<id>``, ``GET /results/<id>``, ``GET /status``.
Run as a subprocess (``python tests/ndif_server.py --model ID=DIR ...``); it prints
``PORT <n>`` once it listens on 127.0.0.1 and exits by itself after
``--idle-timeout`` seconds without a request. Jobs it does run are executed with
nnsight's own server-side deserialization, logitlens unimportable.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.abc
import io
import json
import os
import subprocess
import sys
import threading
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import tornado.ioloop
import tornado.web
import tornado.websocket


class _Blocker(importlib.abc.MetaPathFinder):
    """Make ``logitlens`` unimportable: NDIF's servers only have the shipped source."""

    def find_spec(self, name, path=None, target=None):
        if name == "logitlens" or name.startswith("logitlens."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: as on NDIF)")
        return None


COMMIT = "0123456789abcdef0123456789abcdef01234567"
FAULTS = {
    "none",
    "auth_post",
    "auth_ws",
    "unavailable",
    "server_error",
    "job_error",
    "drop",
    "silent",
    "no_session",
    "queued",
}


class State:
    """Everything the handlers share: hosted models, sessions, jobs, fault, log."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.models: dict[str, Path] = {}
        for spec in args.model:
            repo_id, _, directory = spec.partition("=")
            self.models[repo_id] = Path(directory)
        self.api_key: str | None = args.api_key
        self.inline_limit: int = args.inline_limit
        self.log_path = Path(args.log) if args.log else None
        self.fault = "none"
        self.sessions: dict[str, tornado.websocket.WebSocketHandler] = {}
        self.responses: dict[str, dict] = {}  # job id -> latest status (non-blocking)
        self.results: dict[str, bytes] = {}
        self.loaded: dict[str, tuple[object, dict]] = {}
        self.executor = ThreadPoolExecutor(max_workers=1)  # one job at a time, like a replica
        self.waiting = 0
        self.last_activity = time.monotonic()
        self.lock = threading.Lock()
        self.entries: list[dict] = []

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def record(self, entry: dict) -> None:
        self.entries.append(entry)
        if self.log_path is not None:
            with self.log_path.open("a") as file:
                file.write(json.dumps(entry) + "\n")

    def persistent_objects(self, repo_id: str) -> dict:
        """The hosted model, loaded once: nnsight's map of persistent ids to live objects."""
        with self.lock:
            if repo_id not in self.loaded:
                from nnsight import TransformersModel
                from transformers import AutoModelForCausalLM, AutoTokenizer

                directory = self.models[repo_id]
                module = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
                module.eval().requires_grad_(False)
                tokenizer = AutoTokenizer.from_pretrained(directory)
                wrapped = TransformersModel(module, tokenizer=tokenizer)
                self.loaded[repo_id] = (wrapped, wrapped._remoteable_persistent_objects())
            return self.loaded[repo_id][1]


def execute(blob: bytes, persistent: dict, compress: bool) -> bytes:
    """Deserialize and run one request the way NDIF does; return the result blob."""
    from nnsight.schema.request import RequestModel
    from nnsight.tracing import tracer as tracing

    torch.set_num_threads(1)
    restored = RequestModel.deserialize(blob, persistent, compress)
    tracing.inc()
    try:
        restored.execute(restored.info.code)
        saves = tracing._saves()
        result = {
            name: value
            for name, value in restored.info.frame.f_locals.items()
            if id(value) in saves
        }
    finally:
        tracing.dec()
    buffer = io.BytesIO()
    torch.save(result, buffer)
    data = buffer.getvalue()
    if compress:
        import zstandard

        data = zstandard.ZstdCompressor(level=6).compress(data)
    return data


def status_frame(job_id: str, status: str, description: str = "", data=None) -> dict:
    frame = {"id": job_id, "status": status, "description": description}
    if data is not None:
        frame["data"] = data
    return frame


class Base(tornado.web.RequestHandler):
    @property
    def state(self) -> State:
        return self.application.settings["state"]

    def prepare(self) -> None:
        self.state.touch()

    def fail(self, code: int, detail: str) -> None:
        self.set_status(code)
        self.finish({"detail": detail})


class Subscribe(tornado.websocket.WebSocketHandler):
    """``/subscribe``: the blocking client's status stream."""

    session_id = ""

    @property
    def state(self) -> State:
        return self.application.settings["state"]

    async def get(self, *args, **kwargs):
        self.state.touch()
        key = self.request.headers.get("ndif-api-key")
        if self.state.fault == "auth_ws" or (self.state.api_key and key != self.state.api_key):
            self.set_status(401)
            self.finish({"detail": "Invalid API key."})
            return
        await super().get(*args, **kwargs)

    def open(self) -> None:
        self.session_id = uuid.uuid4().hex
        self.state.sessions[self.session_id] = self
        if self.state.fault != "no_session":
            self.write_message(json.dumps({"session_id": self.session_id}))

    def on_message(self, message) -> None:
        pass

    def on_close(self) -> None:
        self.state.sessions.pop(self.session_id, None)


class Request(Base):
    """``POST /request``: accept a job, answer RECEIVED, run it in the background."""

    async def post(self) -> None:
        state = self.state
        key = self.request.headers.get("ndif-api-key")
        if state.fault == "auth_post" or (state.api_key and key != state.api_key):
            return self.fail(401, "Invalid API key. Create one at https://login.ndif.us.")
        if state.fault == "unavailable":
            return self.fail(503, "The compute backend is reconnecting. Please try again later.")
        job_id = uuid.uuid4().hex
        if state.fault == "server_error":
            return self.fail(500, f"Internal server error while queueing request {job_id}.")
        envelope = json.loads(self.get_body_argument("data"))
        blob = self.request.files["blob"][0]["body"]
        repo_id = json.loads(envelope["model_key"].split(":", 1)[1])["repo_id"]
        if repo_id not in state.models:
            return self.fail(400, f"Model {repo_id} is not deployed on this server.")
        received = status_frame(job_id, "RECEIVED", "Your job has been received.")
        state.responses[job_id] = received
        self.finish(received)
        tornado.ioloop.IOLoop.current().spawn_callback(
            run_job, state, job_id, envelope, blob, repo_id, len(self.request.body), state.fault
        )


async def run_job(
    state: State, job_id: str, envelope: dict, blob: bytes, repo_id: str, up: int, fault: str
) -> None:
    session = state.sessions.get(envelope.get("session_id") or "")

    def send(frame: dict, binary: bytes | None = None) -> None:
        state.responses[job_id] = frame
        state.touch()
        if session is not None and session.ws_connection is not None:
            session.write_message(binary if binary is not None else json.dumps(frame), bool(binary))

    state.waiting += 1
    if fault == "queued":
        send(status_frame(job_id, "QUEUED", f"Your job is queued. Position in queue: {2}."))
        await asyncio.sleep(0.3)
    send(status_frame(job_id, "QUEUED", f"Position in queue: {state.waiting}."))
    loop = asyncio.get_running_loop()
    try:
        if fault not in ("silent", "drop", "job_error"):  # these never need the model
            await loop.run_in_executor(state.executor, state.persistent_objects, repo_id)
        send(status_frame(job_id, "RUNNING", "Your job has started running."))
        if fault == "silent":
            return
        if fault == "drop":
            await asyncio.sleep(0.05)
            if session is not None:
                session.close()
            return
        if fault == "job_error":
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.15 GiB total)"
            )
        started = time.perf_counter()
        persistent = state.persistent_objects(repo_id)
        data = await loop.run_in_executor(
            state.executor, execute, blob, persistent, bool(envelope.get("compress"))
        )
        state.record(
            {
                "job": job_id,
                "model": repo_id,
                "up": up,
                "down": len(data),
                "seconds": time.perf_counter() - started,
            }
        )
        if len(data) <= state.inline_limit:
            from nnsight.schema.response import ResponseModel

            frame = status_frame(job_id, "COMPLETED", "Your job has been completed.")
            state.results[job_id] = data
            binary = ResponseModel(**frame, data=data).pickle()
            send(frame, binary)
        else:
            state.results[job_id] = data
            url = f"http://127.0.0.1:{state.port}/results/{job_id}"
            send(status_frame(job_id, "COMPLETED", "Your job has been completed.", url))
    except Exception as error:  # the job failed on the "server": report it like NDIF
        text = "".join(traceback.format_exception(error))
        send(status_frame(job_id, "ERROR", text))
    finally:
        state.waiting -= 1


class Response(Base):
    def get(self, job_id: str) -> None:
        frame = self.state.responses.get(job_id)
        if frame is None:
            return self.fail(404, "No such job.")
        if frame["status"] == "COMPLETED" and job_id in self.state.results:
            frame = {**frame, "data": f"http://127.0.0.1:{self.state.port}/results/{job_id}"}
        self.finish(frame)


class Results(Base):
    def get(self, job_id: str) -> None:
        data = self.state.results.get(job_id)
        if data is None:
            return self.fail(404, "Result not found.")
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(data)


class Status(Base):
    def get(self) -> None:
        deployments = {}
        for repo_id in self.state.models:
            key = json.dumps({"repo_id": repo_id, "revision": "main"})
            deployments[repo_id] = {
                "model_key": f"nnsight.modeling.transformers.TransformersModel:{key}",
                "repo_id": repo_id,
                "revision": "main",
                "deployment_level": "HOT",
                "application_state": "RUNNING",
            }
        self.finish({"deployments": deployments})


class Control(Base):
    def post(self) -> None:
        fault = json.loads(self.request.body)["fault"]
        if fault not in FAULTS:
            return self.fail(400, f"Unknown fault {fault!r}.")
        self.state.fault = fault
        self.finish({"fault": fault})

    def get(self) -> None:
        self.finish({"entries": self.state.entries})


class HubModel(Base):
    """``/api/models/<org>/<name>[/revision/<rev>|/tree/<rev>]``: just enough metadata."""

    def get(self, repo_id: str, rest: str | None = None) -> None:
        rest = rest or ""
        directory = self.state.models.get(repo_id)
        if directory is None:
            self.set_header("X-Error-Code", "RepoNotFound")
            return self.fail(404, f"Repository {repo_id} not found.")
        files = sorted(p.name for p in directory.iterdir() if p.is_file())
        if rest.startswith("/tree"):
            if rest.count("/") > 2:  # a folder inside the repo: this hub has none
                self.set_header("X-Error-Code", "EntryNotFound")
                return self.fail(404, f"No such folder in {repo_id}.")
            tree = [
                {
                    "type": "file",
                    "path": name,
                    "size": (directory / name).stat().st_size,
                    "oid": hashlib.sha1(name.encode()).hexdigest(),
                }
                for name in files
            ]
            self.set_header("Content-Type", "application/json")
            return self.finish(json.dumps(tree))
        self.finish(
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": COMMIT,
                "private": False,
                "pipeline_tag": "text-generation",
                "library_name": "transformers",
                "siblings": [{"rfilename": name} for name in files],
            }
        )


class HubFile(Base):
    """``/<org>/<name>/resolve/<rev>/<file>``: config, tokenizer and weight files, ranges too."""

    def _locate(self, repo_id: str, filename: str) -> Path | None:
        directory = self.state.models.get(repo_id)
        path = directory / filename if directory is not None else None
        self.set_header("X-Repo-Commit", COMMIT)
        if path is None or not path.is_file():
            self.set_header("X-Error-Code", "EntryNotFound" if directory else "RepoNotFound")
            self.set_status(404)
            return None
        digest = hashlib.sha256(f"{path}:{path.stat().st_size}".encode()).hexdigest()
        self.set_header("ETag", f'"{digest}"')
        self.set_header("Accept-Ranges", "bytes")
        return path

    def head(self, repo_id: str, revision: str, filename: str) -> None:
        path = self._locate(repo_id, filename)
        if path is not None:
            self.set_header("Content-Length", str(path.stat().st_size))
        self.finish()

    def get(self, repo_id: str, revision: str, filename: str) -> None:
        path = self._locate(repo_id, filename)
        if path is None:
            return self.finish({"error": "Entry not found"})
        size = path.stat().st_size
        header = self.request.headers.get("Range")
        with path.open("rb") as file:
            if header and header.startswith("bytes="):
                first, _, last = header[len("bytes=") :].partition("-")
                start = int(first) if first else size - int(last)
                stop = min(int(last), size - 1) if first and last else size - 1
                file.seek(start)
                self.set_status(206)
                self.set_header("Content-Range", f"bytes {start}-{stop}/{size}")
                self.finish(file.read(stop - start + 1))
            else:
                self.finish(file.read())


class Loopback:
    """A running server, seen from the tests: its url, its fault switch, its byte log."""

    def __init__(self, process: subprocess.Popen, port: int) -> None:
        self.process = process
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def set_fault(self, fault: str) -> None:
        import httpx

        httpx.post(f"{self.url}/_control/fault", json={"fault": fault}).raise_for_status()

    def entries(self) -> list[dict]:
        import httpx

        return httpx.get(f"{self.url}/_control/fault").json()["entries"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def launch(
    models: dict[str, Path],
    *,
    api_key: str | None = None,
    log: Path | None = None,
    idle_timeout: float = 300.0,
    inline_limit: int = 1 << 20,
) -> Loopback:
    """Start the server in a subprocess (logitlens blocked there) and wait until it listens."""
    command = [sys.executable, str(Path(__file__).resolve()), "--idle-timeout", str(idle_timeout)]
    command += ["--inline-limit", str(inline_limit)]
    for repo_id, directory in models.items():
        command += ["--model", f"{repo_id}={directory}"]
    if api_key:
        command += ["--api-key", api_key]
    if log:
        command += ["--log", str(log)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_ENDPOINT")}
    env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"the loopback NDIF server did not start: {line!r}")
    return Loopback(process, int(line.split()[1]))


def main() -> None:
    sys.meta_path.insert(0, _Blocker())
    sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith(("/src", "/tests"))]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="HUB_ID=DIRECTORY")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="the only key accepted")
    parser.add_argument("--log", default=None, help="JSONL file: bytes per request")
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    parser.add_argument("--inline-limit", type=int, default=1 << 20)
    args = parser.parse_args()
    state = State(args)
    repo = r"([^/]+/[^/]+)"
    app = tornado.web.Application(
        [
            (r"/subscribe", Subscribe),
            (r"/request", Request),
            (r"/response/(\w+)", Response),
            (r"/results/(\w+)", Results),
            (r"/status", Status),
            (r"/_control/fault", Control),
            (rf"/api/models/{repo}(/.*)?", HubModel),
            (rf"/{repo}/resolve/([^/]+)/(.+)", HubFile),
        ],
        state=state,
        websocket_max_message_size=1 << 30,
    )

    async def serve() -> None:
        server = app.listen(args.port, address="127.0.0.1", max_body_size=1 << 31)
        state.port = next(iter(server._sockets.values())).getsockname()[1]
        print(f"PORT {state.port}", flush=True)
        while time.monotonic() - state.last_activity < args.idle_timeout:
            await asyncio.sleep(0.5)
        server.stop()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
