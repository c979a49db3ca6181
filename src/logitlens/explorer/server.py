"""The explorer's HTTP server: the page, its JSON API, and who may use them.

Routes: ``GET /`` (the page), ``GET /api/info`` (model and lenses), ``GET /api/status``
(what runs, how many wait), ``POST /api/analyze`` (an :class:`AnalysisRequest` as JSON;
the answer's view data and full result) and ``POST /api/report`` (the self-contained HTML
report of that answer, as a download). Bad input is a 400 with ``{"error": one line}``;
the server goes on serving.

Who may ask: bound to a loopback address (the default), requests must name a loopback
host (no DNS rebinding) and come from the page's own origin. Bound to anything else, a
``token`` is required to start, and every request must carry it (``?token=`` on the
page's address, then the ``X-Logitlens-Token`` header), as Jupyter does. The page gets a
content security policy that allows no network but this server.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import jsontext
from ..errors import InputError, LogitLensError
from .app import AnalysisRequest, Explorer

MAX_BODY = 4_000_000
"""Bytes a request body may hold (a prompt at the bundled model's full context is ~40 kB)."""
TOKEN_HEADER = "X-Logitlens-Token"
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data: blob:; base-uri 'none'; form-action 'none'"
)


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, token: str | None) -> None:
    """Refuse to expose the model beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise InputError(
            f"--host {host} lets other machines reach the model: pass --token SECRET as "
            "well (then open http://HOST:PORT/?token=SECRET), or keep the default "
            "--host 127.0.0.1."
        )


def render_page(explorer: Explorer) -> str:
    """The explorer page: its HTML, the lens view, CSS and JavaScript inline."""
    import html

    from ..pictures.report import asset

    title = html.escape(f"logitlens explorer: {explorer.model.name}")
    return (
        asset("explorer.html")
        .replace("__VIEW__", asset("lens_view.html"))
        .replace("__TITLE__", title)
        .replace("__CSS__", asset("report.css") + asset("explorer.css"))
        .replace("__SCRIPT__", asset("report.js") + asset("explorer.js"))
    )


class ExplorerServer(ThreadingHTTPServer):
    """One :class:`Explorer` on ``host:port`` (port 0: a free one); see :attr:`url`."""

    daemon_threads = True

    def __init__(
        self,
        explorer: Explorer,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
        log: Any = None,
    ) -> None:
        check_binding(host, token)
        self.explorer = explorer
        self.token = token
        self.loopback = is_loopback(host)
        self.page = render_page(explorer)
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        if ":" in host.strip("[]"):
            self.address_family = socket.AF_INET6
        try:
            super().__init__((host.strip("[]"), port), Handler)
        except OSError as error:
            raise InputError(
                f"Cannot listen on {host}:{port} ({error.strerror or error}); choose another "
                "--port (0 picks a free one) or --host."
            ) from None

    @property
    def url(self) -> str:
        """The page's address (with the token, when there is one)."""
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/" + (f"?token={self.token}" if self.token else "")


class Handler(BaseHTTPRequestHandler):
    """The routes of :class:`ExplorerServer`."""

    server: ExplorerServer
    protocol_version = "HTTP/1.1"
    server_version = "logitlens"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if not self._allowed():
            return
        explorer = self.server.explorer
        if path == "/":
            self._send(HTTPStatus.OK, self.server.page.encode(), "text/html; charset=utf-8")
        elif path == "/api/info":
            self._json(HTTPStatus.OK, explorer.info())
        elif path == "/api/status":
            self._json(HTTPStatus.OK, explorer.status())
        else:
            self._error(HTTPStatus.NOT_FOUND, f"No page {path!r}: open / instead.")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if not self._allowed():
            return
        if path not in ("/api/analyze", "/api/report"):
            self._error(HTTPStatus.NOT_FOUND, f"No API {path!r}.")
            return
        start = time.perf_counter()
        try:
            request = AnalysisRequest.from_json(self._body())
            explorer = self.server.explorer
            if path == "/api/analyze":
                answer = explorer.analyze(request)
                self._json(HTTPStatus.OK, answer.payload())
            else:
                answer = explorer.kept(request)
                self._send(
                    HTTPStatus.OK,
                    _report_page(answer).encode(),
                    "text/html; charset=utf-8",
                    {"Content-Disposition": 'attachment; filename="logitlens-report.html"'},
                )
        except LogitLensError as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error))
        except Exception as error:  # the server keeps serving whatever one request did
            self._error(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                f"Unexpected {type(error).__name__}: {error}. This is a bug in logitlens: "
                "please report it.",
            )
        else:
            self.server.log(
                f"{path} {len(request.prompts)} prompt(s), {request.lens} lens: "
                f"{time.perf_counter() - start:.3f} s"
            )

    def _body(self) -> Any:
        kind = self.headers.get("Content-Type", "").split(";")[0].strip()
        if kind != "application/json":
            raise InputError("Send the request as JSON (Content-Type: application/json).")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise InputError("The request has no Content-Length.") from None
        if not 0 <= length <= MAX_BODY:
            raise InputError(f"The request is {length} bytes; at most {MAX_BODY}.")
        try:
            return json.loads(self.rfile.read(length).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(f"The request is not valid JSON ({error}).") from None

    def _allowed(self) -> bool:
        """The token, when the server has one; else a loopback Host and our own Origin."""
        token = self.server.token
        if token:
            given = self.headers.get(TOKEN_HEADER) or _query_token(self.path)
            if given is None or not hmac.compare_digest(given.encode(), token.encode()):
                self._error(
                    HTTPStatus.FORBIDDEN,
                    "This server needs its token: open the address `logitlens serve` printed "
                    "(http://HOST:PORT/?token=...).",
                )
                return False
            return True
        host = self.headers.get("Host", "")
        hostname = urlsplit(f"//{host}").hostname or ""
        origin = self.headers.get("Origin")
        if not is_loopback(hostname) or (origin is not None and origin != f"http://{host}"):
            self._error(
                HTTPStatus.FORBIDDEN,
                "Requests must come from this machine's own page (http://127.0.0.1:PORT/).",
            )
            return False
        return True

    def _json(self, status: HTTPStatus, payload: Any) -> None:
        body = jsontext.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        line = " ".join(message.split())
        if status >= 500:
            self.server.log(f"Error: {line}")
        self._json(status, {"error": line})

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        kind: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if kind.startswith("text/html"):
            self.send_header("Content-Security-Policy", PAGE_POLICY)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: each analysis is logged once by ``do_POST``, errors by ``_error``."""


def _query_token(path: str) -> str | None:
    values = parse_qs(urlsplit(path).query).get("token")
    return values[0] if values else None


def _report_page(answer: Any) -> str:
    from ..pictures.report import render_report_data

    result = answer.result
    return render_report_data(answer.view(), f"logitlens: {result.model_name} ({result.lens} lens)")


def serve(explorer: Explorer, host: str, port: int, token: str | None = None) -> None:
    """Serve ``explorer`` until Ctrl-C, the page's address on stdout first."""
    server = ExplorerServer(explorer, host, port, token)
    print(
        f"logitlens explorer for {explorer.model.name}: {server.url}  (Ctrl-C stops it)",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()


__all__ = ["ExplorerServer", "check_binding", "is_loopback", "render_page", "serve"]
