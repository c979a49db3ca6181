"""nnsight's NDIF client, with a deadline, a progress line on stderr and one-line errors.

``NdifBackend`` is nnsight's own ``RemoteBackend`` (same serialization, same
``/subscribe`` websocket and multipart ``POST /request``, same result decoding)
with the waiting rewritten so that:

- the whole job (session, upload, queue, run, download) has one deadline, ``timeout``
  seconds; a silent server or a missing session id ends there instead of never;
- status (received, queued with its position, running, elapsed) goes to stderr as
  one progress line, so stdout stays clean for ``--json``;
- every failure becomes a :class:`~logitlens.errors.RemoteError` naming the problem
  and the fix (see :mod:`logitlens.remote.failures`), without the API key.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from typing import Any

from nnsight.intervention.backends.remote import RemoteBackend
from nnsight.intervention.backends.remote import RemoteError as NnsightRemoteError
from nnsight.schema.request import RequestModel
from nnsight.schema.response import ResponseModel, Status

from ..errors import RemoteError
from . import failures

DEFAULT_TIMEOUT = 600.0
"""Seconds a whole remote job may take (queue included) before logitlens gives up."""

_TICK = 0.2  # how often the wait wakes to check the deadline and redraw the line
_CONNECT = 10.0


class Progress:
    """One status line on stderr: redrawn in place on a terminal, a line per change otherwise."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.started = time.monotonic()
        self.status = "CONNECTING"
        self.job_id: str | None = None
        self.queue_position: int | None = None
        self._shown = ""
        self._drawn_at = 0.0
        self._tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, response: ResponseModel) -> None:
        if response.status == Status.LOG:
            return
        self.job_id = response.id
        self.status = response.status.value
        found = re.search(r"position[^0-9]{0,20}(\d+)", response.description or "", re.I)
        self.queue_position = int(found.group(1)) if found else None
        self.draw()

    def draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        where = f" (position {self.queue_position})" if self.queue_position else ""
        text = f"NDIF job {self.job_id or '-'}: {self.status.lower()}{where}"
        now = time.monotonic()
        if self._tty:
            if text != self._shown or force or now - self._drawn_at >= 1.0:
                sys.stderr.write(f"\r\033[K{text}, {self.elapsed:.0f}s")
                sys.stderr.flush()
                self._drawn_at = now
        elif text != self._shown:
            sys.stderr.write(f"{text}, {self.elapsed:.1f}s\n")
            sys.stderr.flush()
        self._shown = text

    def close(self) -> None:
        if self.enabled and self._tty and self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


class NdifBackend(RemoteBackend):
    """A blocking ``RemoteBackend`` that never waits past ``timeout`` seconds.

    Example:
        >>> backend = NdifBackend(model.nn.to_model_key(), timeout=60)
        >>> with model.nn.trace("Hello", backend=backend):
        ...     hidden = model.nn.model.layers[0].output[0].save()
    """

    def __init__(
        self,
        model_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        progress: bool = True,
        env: dict | None = None,
        host: str | None = None,
        api_key: str | None = None,
        blocking: bool = True,
    ) -> None:
        super().__init__(model_key, host=host, api_key=api_key, env=env, blocking=True)
        self.waits_on_socket = blocking
        self.display.enabled = False  # nnsight's spinner writes to stdout
        self.timeout = float(timeout)
        self.show_progress = progress
        self.progress = Progress(False)
        self.sent_bytes = 0
        self.received_bytes = 0

    # -- the deadline ---------------------------------------------------------

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise failures.timed_out(
                self.host, self.progress.job_id, self.progress.status, self.timeout
            )
        return left

    def _fail(self, error: RemoteError) -> RemoteError:
        error.args = (failures.redact(str(error), self.api_key),)
        return error

    # -- the protocol -----------------------------------------------------------

    def request(self, request: RequestModel, tracer: Any) -> Any:
        self.deadline = time.monotonic() + self.timeout
        self.progress = Progress(self.show_progress)
        try:
            return self._run(request, tracer)
        except RemoteError as error:
            raise self._fail(error) from None
        finally:
            self.progress.close()

    def _run(self, request: RequestModel, tracer: Any) -> Any:
        import websocket

        blob = self._serialize(tracer)
        self.sent_bytes = len(blob)
        if not self.waits_on_socket:
            return self._run_polling(request, blob)
        headers = {"ndif-api-key": self.api_key} if self.api_key else None
        try:
            connection = websocket.create_connection(
                f"{self.ws_host}/subscribe", header=headers, timeout=min(_CONNECT, self._left())
            )
        except websocket.WebSocketBadStatusException as error:
            if error.status_code in (401, 403):
                raise failures.bad_key(self.host, "websocket") from None
            raise failures.http_failure(
                self.host, error.status_code, _detail(error.resp_body), None
            ) from None
        except (OSError, websocket.WebSocketException) as error:
            raise failures.unreachable(self.host, _reason(error)) from None
        try:
            request.session_id = self._receive_json(connection)["session_id"]
            self.handle_update(self._post(request, blob))
            while True:
                response = self._next_update(connection)
                result = self.handle_update(response)
                if response.status == Status.COMPLETED:
                    return result
        finally:
            connection.close()

    def _run_polling(self, request: RequestModel, blob: bytes) -> Any:
        """Non-blocking: no websocket; NDIF keeps each status in its object store and
        ``GET /response/<id>`` reads it back (nnsight's ``blocking=False`` protocol)."""
        import httpx

        response = self._post(request, blob)
        job_id = response.id
        self.handle_update(response)
        headers = {"ndif-api-key": self.api_key} if self.api_key else None
        pause = 0.1
        with httpx.Client(headers=headers) as client:
            while True:
                time.sleep(min(pause, self._left()))
                pause = min(pause * 1.5, 2.0)
                try:
                    answer = client.get(
                        f"{self.host}/response/{job_id}",
                        timeout=httpx.Timeout(min(_CONNECT, self._left()), read=self._left()),
                    )
                except httpx.TimeoutException:
                    self._left()
                    continue
                except httpx.HTTPError as error:
                    raise failures.dropped(
                        self.host, job_id, f"polling ({_reason(error)})", self.progress.elapsed
                    ) from None
                if answer.status_code == 404:  # no status stored yet
                    self.progress.draw()
                    continue
                if answer.status_code >= 400:
                    raise failures.http_failure(
                        self.host, answer.status_code, _detail(answer.text), job_id
                    )
                self.received_bytes += len(answer.content)
                update = ResponseModel.model_validate_json(answer.text)
                result = self.handle_update(update)
                if update.status == Status.COMPLETED:
                    return result

    def _receive_json(self, connection: Any) -> dict:
        message = self._receive(connection)
        return json.loads(message)

    def _receive(self, connection: Any) -> Any:
        """The next websocket frame, waiting no longer than the deadline."""
        import websocket

        while True:
            connection.settimeout(min(_TICK, self._left()))
            try:
                message = connection.recv()
            except websocket.WebSocketTimeoutException:
                self.progress.draw()
                continue
            except (websocket.WebSocketConnectionClosedException, OSError):
                message = ""
            if message in ("", b"", None):  # the server closed the socket
                raise failures.dropped(
                    self.host, self.progress.job_id, self.progress.status, self.progress.elapsed
                )
            return message

    def _next_update(self, connection: Any) -> ResponseModel:
        message = self._receive(connection)
        if isinstance(message, (bytes, bytearray)):
            self.received_bytes += len(message)
        return self.parse(message)

    def handle_update(self, response: ResponseModel) -> Any:
        self.progress.update(response)
        try:
            return self.handle(response)
        except NnsightRemoteError:
            error = failures.job_failed(
                response.id, failures.redact(response.description, self.api_key)
            )
            error.server_traceback = failures.redact(response.description, self.api_key)
            raise error from None

    def _post(self, request: RequestModel, blob: bytes) -> ResponseModel:
        """nnsight's own upload (its headers, form fields and file), within the deadline.

        ``RemoteBackend._post`` runs unchanged, so every header nnsight sends
        (``nnsight-version`` and ``python-version``, which NDIF gates on, the API
        key, the timestamp, and any nnsight adds later) goes out as nnsight sends it.
        It runs on a helper thread only so that the deadline holds during the upload.
        """
        import httpx
        from pydantic import ValidationError

        done = threading.Event()
        outcome: dict[str, Any] = {}

        def upload() -> None:
            try:
                outcome["response"] = RemoteBackend._post(self, request, blob)
            except BaseException as error:  # handed to the waiting thread
                outcome["error"] = error
            finally:
                done.set()

        threading.Thread(target=upload, name="ndif-upload", daemon=True).start()
        while not done.wait(min(_TICK, self._left())):
            self.progress.draw()
        error = outcome.get("error")
        if error is None:
            return outcome["response"]
        cause = error.__cause__ if isinstance(error, NnsightRemoteError) else error
        if isinstance(cause, httpx.HTTPStatusError):
            answer = cause.response
            raise failures.http_failure(self.host, answer.status_code, _detail(answer.text), None)
        if isinstance(cause, httpx.TimeoutException):
            raise failures.timed_out(self.host, None, "uploading", self.timeout)
        if isinstance(cause, httpx.HTTPError):
            raise failures.unreachable(self.host, _reason(cause))
        if isinstance(cause, (ValidationError, ValueError)):
            raise failures.not_ndif(self.host, "/request", "its answer is not a job status")
        raise error

    def download_result(self, url: Any) -> Any:
        if isinstance(url, (bytes, bytearray)) or not url:
            return super().download_result(url)
        import httpx

        try:
            with httpx.Client(timeout=httpx.Timeout(_CONNECT, read=self._left())) as client:
                answer = client.get(url)
        except httpx.TimeoutException:
            raise failures.timed_out(
                self.host, self.progress.job_id, "downloading", self.timeout
            ) from None
        except httpx.HTTPError as error:
            raise failures.dropped(
                self.host,
                self.progress.job_id,
                f"downloading ({_reason(error)})",
                self.progress.elapsed,
            ) from None
        if answer.status_code >= 400:
            raise failures.http_failure(
                self.host, answer.status_code, _detail(answer.text), self.progress.job_id
            )
        self.received_bytes += len(answer.content)
        return self.finalize(answer.content)


def _detail(body: Any) -> str:
    """The server's own explanation: FastAPI's ``{"detail": ...}`` or the raw text."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(body)
        text = parsed.get("detail", parsed) if isinstance(parsed, dict) else parsed
    except (TypeError, ValueError):
        text = body
    return " ".join(str(text or "no message").split())[:300]


def _reason(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError) or "refused" in str(error).lower():
        return "connection refused"
    return " ".join(str(error).split())[:200] or type(error).__name__
