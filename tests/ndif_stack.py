"""The real NDIF server for the test suite, started on 127.0.0.1 and stopped with it.

``start(models)`` launches, each bound to 127.0.0.1 on a free port:

- ``redis-server`` (Debian's): NDIF's queue, pub/sub and status cache;
- ``moto_server`` (PyPI ``moto[server]``): an S3-compatible object store, for
  what NDIF's ``ObjectStoreProvider`` keeps there (non-blocking responses, and
  results too large to go back on the socket);
- NDIF's API service, ``ndif.services.api.app`` under uvicorn, from the ``ndif``
  package in its own virtual environment (``.venv-ndif``, made by
  ``scripts/setup.sh --test``); one per client-version gate, see ``Stack.api``;
- ``tests/ndif_worker.py``: NDIF's dispatcher and model actor on CPU.

Every process is started with ``PR_SET_PDEATHSIG``: it is killed when the test
process dies, however it dies (a killed pytest leaves nothing behind).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ndif_venv() -> Path:
    """``.venv-ndif`` beside this checkout's tests, else beside the running venv."""
    if os.environ.get("LOGITLENS_NDIF_VENV"):
        return Path(os.environ["LOGITLENS_NDIF_VENV"])
    here = ROOT / ".venv-ndif"
    beside = Path(sys.prefix).parent / ".venv-ndif"
    return here if here.is_dir() or not beside.is_dir() else beside


NDIF_VENV = _ndif_venv()
NDIF_PYTHON = NDIF_VENV / "bin" / "python"
S3_KEY = "ndif-test"
# The API rejects nothing when no minimum is set; "gated" is how a public
# deployment runs: the installed nnsight and this Python pass.
GATES = {
    "open": {},
    "gated": {"NDIF_MIN_NNSIGHT_VERSION": "0.8.0", "NDIF_MIN_PYTHON_VERSION": "3.10"},
    "new-nnsight": {"NDIF_MIN_NNSIGHT_VERSION": "99.0"},
    "new-python": {"NDIF_MIN_NNSIGHT_VERSION": "0.8.0", "NDIF_MIN_PYTHON_VERSION": "3.99"},
}


def missing() -> str | None:
    """Why the real server cannot start here, or None."""
    if not NDIF_PYTHON.is_file():
        return f"no {NDIF_VENV} (run `bash scripts/setup.sh --test`)"
    if shutil.which("redis-server") is None:
        return "no redis-server (Debian: apt-get install redis-server)"
    return None


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the process that started it exits."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setpgrp()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, what: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited ({process.returncode}): {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f}s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-8:])
    except OSError:
        return ""


@dataclass
class Stack:
    """A running NDIF: its processes, ports and log directory."""

    logs: Path
    redis_port: int
    s3_port: int
    env: dict
    processes: list = field(default_factory=list)
    apis: dict = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}"

    def spawn(self, name: str, command: list, env: dict | None = None) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env or self.env,
            cwd=self.logs,
            preexec_fn=_die_with_parent,
        )
        self.processes.append(process)
        return process

    def api(self, gate: str = "gated") -> str:
        """The url of NDIF's API service under ``gate`` (see GATES), started on first use."""
        if gate not in self.apis:
            self.start_apis((gate,))
        return self.apis[gate]

    def start_apis(self, gates) -> None:
        """Start one API service per gate, side by side, and wait until each serves jobs."""
        starting = {}
        for gate in gates:
            if gate in self.apis:
                continue
            port = free_port()
            command = [str(NDIF_PYTHON), "-m", "uvicorn", "ndif.services.api.app:app"]
            command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
            starting[gate] = (port, self.spawn(f"api-{gate}", command, {**self.env, **GATES[gate]}))
        for gate, (port, process) in starting.items():
            _wait_port(port, process, f"NDIF API ({gate})", self.logs / f"api-{gate}.log", 180)
            self.apis[gate] = f"http://127.0.0.1:{port}"
            self.wait_connected(self.apis[gate])

    def wait_connected(self, url: str, timeout: float = 180.0) -> None:
        """Until the API answers ``/connected`` (the dispatcher has set ``ray:connected``)."""
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/connected", timeout=5).status_code == 200:
                    return
            worker = self.processes[2] if len(self.processes) > 2 else None
            if worker is not None and worker.poll() is not None:
                raise RuntimeError(f"the NDIF worker exited: {_tail(self.logs / 'worker.log')}")
            time.sleep(0.2)
        raise RuntimeError(f"NDIF at {url} never connected: {_tail(self.logs / 'worker.log')}")

    def redis(self, *args: str) -> object:
        """One Redis command (RESP over a socket: the test venv has no redis client)."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        with socket.create_connection(("127.0.0.1", self.redis_port), 5) as connection:
            connection.sendall(b"".join(parts))
            reader = connection.makefile("rb")
            return _read_reply(reader)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _read_reply(reader) -> object:
    line = reader.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        return None if size < 0 else reader.read(size + 2)[:-2].decode()
    if kind == b"*":
        return [_read_reply(reader) for _ in range(int(rest))]
    raise ValueError(f"unexpected Redis reply {line!r}")


def start(models: dict, logs: Path, *, warm: dict | None = None, cold: dict | None = None) -> Stack:
    """Redis, the object store and the worker, up; APIs start on first ``Stack.api``."""
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    redis_port, s3_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "NDIF_REDIS_URL": f"redis://127.0.0.1:{redis_port}",
            "NDIF_OBJECT_STORE_URL": f"http://127.0.0.1:{s3_port}",
            "NDIF_OBJECT_STORE_ACCESS_KEY": S3_KEY,
            "NDIF_OBJECT_STORE_SECRET_KEY": S3_KEY,
            "NDIF_QUEUE_FETCH_TIMEOUT_S": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
        }
    )
    logs.mkdir(parents=True, exist_ok=True)
    stack = Stack(logs, redis_port, s3_port, env)
    try:
        # A small pubsub limit, so that NDIF's own rule (RedisProvider.max_publish_bytes)
        # sends larger results through the object store even for blocking requests.
        redis = stack.spawn(
            "redis",
            [
                *("redis-server", "--bind", "127.0.0.1", "--port", str(redis_port)),
                *("--save", "", "--appendonly", "no"),
                *("--client-output-buffer-limit", "pubsub 0 256kb 60"),
            ],
        )
        s3 = stack.spawn(
            "s3", [str(NDIF_VENV / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)]
        )
        _wait_port(redis_port, redis, "redis-server", logs / "redis.log", 20)
        command = [str(NDIF_PYTHON), str(Path(__file__).with_name("ndif_worker.py"))]
        for flag, group in (("--model", models), ("--warm", warm or {}), ("--cold", cold or {})):
            for repo_id, directory in group.items():
                command += [flag, f"{repo_id}={directory}"]
        stack.spawn("worker", command)
        _wait_port(s3_port, s3, "moto_server", logs / "s3.log", 60)
    except BaseException:
        stack.stop()
        raise
    return stack


if __name__ == "__main__":  # a manual check: python tests/ndif_stack.py HUB_ID=DIR
    import tempfile

    pairs = dict(arg.split("=", 1) for arg in sys.argv[1:])
    running = start(pairs, Path(tempfile.mkdtemp()))
    print(running.api(), running.logs, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()
    running.stop()
