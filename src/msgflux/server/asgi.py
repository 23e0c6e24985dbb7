"""ASGI plumbing with no framework: read a bounded body, send a response, notice a hang-up.

The server is a plain ASGI callable (uvicorn with httptools runs it); these helpers are the
only code that speaks the ASGI message protocol, so endpoints deal in bytes and headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from msgflux.server.errors import HTTPError

__all__ = [
    "JSON",
    "WATCH_AFTER",
    "Disconnected",
    "Headers",
    "Receive",
    "Scope",
    "Send",
    "Watch",
    "header",
    "read_body",
    "send_bytes",
    "send_error",
    "send_json",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"


class Disconnected(Exception):
    """The client went away before its request body was read."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lower-case)."""
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refusing (413) past ``limit`` bytes, before reading it when the
    client announced its length."""
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HTTPError(400, "invalid Content-Length header") from None
        if size > limit:
            raise _too_large(limit)
    message = await receive()
    if message["type"] == "http.disconnect":
        raise Disconnected
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        if len(body) > limit:
            raise _too_large(limit)
        return body
    parts = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


def _too_large(limit: int) -> HTTPError:
    return HTTPError(
        413,
        f"the request body is over the server's limit of {limit} bytes (server.max_body_bytes)",
        code="request_too_large",
    )


async def send_bytes(
    send: Send, status: int, body: bytes, content_type: bytes, headers: Headers | None = None
) -> None:
    out = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        out += headers
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, data: Any, headers: Headers | None = None) -> None:
    await send_bytes(send, status, orjson.dumps(data), JSON, headers)


async def send_error(send: Send, error: HTTPError, headers: Headers | None = None) -> None:
    extra = error.headers + (headers or [])
    await send_bytes(send, error.status, error.body(), JSON, extra)


WATCH_AFTER = 0.05
"""Seconds a request runs before its client's connection is watched (a task per request costs
tens of microseconds; most short answers are done before it would start)."""


class Watch:
    """Cancels the request's task when the client hangs up before the response is complete.

    uvicorn's ``receive()`` returns ``http.disconnect`` when the connection closes (or once
    the response is complete, which :meth:`finish` marks as not a hang-up). Cancelling the
    task cancels the gateway's attempt, which closes the upstream connection. The watching
    starts :data:`WATCH_AFTER` seconds into the request: a hang-up is noticed that much later
    at most, and a request answered sooner never pays for the watcher's task.
    """

    __slots__ = ("_done", "_future", "_receive", "_task", "_timer", "disconnected")

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._receive = receive
        self._done = False
        self.disconnected = False
        self._future: asyncio.Future[Message] | None = None
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            WATCH_AFTER, self._start
        )

    def _start(self) -> None:
        self._timer = None
        if self._done:
            return
        self._future = asyncio.ensure_future(self._receive())
        self._future.add_done_callback(self._on_message)

    def _on_message(self, future: asyncio.Future[Message]) -> None:
        if self._done or future.cancelled() or future.exception() is not None:
            return
        if future.result().get("type") == "http.disconnect":
            self.disconnected = True
            self._task.cancel()

    def finish(self) -> None:
        """The response is about to complete: a disconnect from now on is the normal end."""
        self._done = True

    def close(self) -> None:
        self._done = True
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        future = self._future
        if future is not None and not future.done():
            future.cancel()

    def absorb(self) -> bool:
        """After a CancelledError: True (and the cancellation cleared) when it was ours."""
        if not self.disconnected:
            return False
        uncancel = getattr(self._task, "uncancel", None)  # Python >= 3.11 counts cancels
        if uncancel is not None:
            uncancel()
        return True
