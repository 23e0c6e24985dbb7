"""A scriptable OpenAI-compatible HTTP server for tests and benchmarks.

It runs on 127.0.0.1 in a background thread with its own event loop, so the same server
serves sync tests and async tests (and never blocks the test's own loop)::

    with Upstream() as up:              # in tests, use the ``upstream`` fixture instead
        up.script([Reply(status=500), Reply(delay=0.2, text="hi")])
        model = Model.chat_completion("openai/gpt-4.1-nano", base_url=up.base_url)
        ...
        assert up.count("chat") == 2

**Scripting.** Each request takes the next :class:`Reply` from a queue, most specific first:
``(route, model)``, then ``model``, then ``route``, then the catch-all queue (``script()``
without filters); when every matching queue is empty it gets the default, which is a normal
200 answer unless :meth:`Upstream.set_default` changed it. ``model`` is the ``"model"``
field of the request body, so two deployments with different model ids can be scripted
independently on one server.

**Routes** (all under ``/v1``): ``chat`` (``/chat/completions``, JSON or SSE when the body
says ``"stream": true``), ``embeddings``, ``moderations``, ``speech`` (``/audio/speech``),
``transcriptions`` (``/audio/transcriptions``, multipart), ``images``
(``/images/generations``) and ``models`` (``GET /models``).

**Recording.** :attr:`Upstream.requests` lists every request (:class:`Recorded`: route,
model, headers, parsed body, the reply it got, whether the client hung up early).
``count()``, ``closed_early()`` and ``wait_for()``/``await_for()`` answer the usual
questions; the server notices a client hanging up (a hedge loser, a closed stream) a moment
after it happens, so wait for it rather than asserting immediately.

**OpenAI's Responses API** (``POST /v1/responses``, JSON or SSE): :mod:`tests.upstream_responses`
checks each request as OpenAI would and answers with the same :class:`Reply` knobs (text,
chunks, tool calls, reasoning, ``cut_after``, ``stream_error``); a stored response's id is
accepted as a later ``previous_response_id``, any other is a 400.

**Vendor wire formats.** The same server speaks Anthropic's Messages API (``POST
/v1/messages``), the Gemini API (``/v1beta/models/{model}:generateContent`` and the other
methods) and Azure OpenAI (``/openai/deployments/{deployment}/...?api-version=...``,
``/openai/v1/...``): it checks each request the way the vendor would (a refused one gets the
vendor's 4xx error and :attr:`Recorded.invalid` says why) and renders the same
:class:`Reply` knobs in the vendor's answers, SSE events and error bodies. The model of a
Gemini or Azure-deployment request is the one its path names. :mod:`tests.upstream_vendors`
lists the routes and the knobs each vendor reads.

**Cloud vendors.** AWS Bedrock's runtime (``/model/{id}/converse``..., every request's SigV4
signature verified), Google Vertex AI (``/v1/projects/.../publishers/...``, OAuth tokens
checked) and the credential services their SDKs call: :mod:`tests.upstream_cloud`, with its
keys, service accounts and tokens in :attr:`Upstream.cloud`.

Run it standalone with ``python -m tests.upstream --port 8000`` (from the repository's root);
it prints its base URL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import itertools
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import orjson
from aiohttp import web

from tests import upstream_cloud as cloud
from tests import upstream_responses as responses
from tests import upstream_vendors as vendors

__all__ = ["ROUTES", "Recorded", "Reply", "ToolCallSpec", "Upstream", "closed_port_url"]

ROUTES: dict[tuple[str, str], str] = {
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/embeddings"): "embeddings",
    ("POST", "/v1/moderations"): "moderations",
    ("POST", "/v1/audio/speech"): "speech",
    ("POST", "/v1/audio/transcriptions"): "transcriptions",
    ("POST", "/v1/images/generations"): "images",
    ("GET", "/v1/models"): "models",
}
"""``(method, path) -> route name`` used by ``script(route=...)`` and ``count(route)``."""

_UNSET: Any = object()


@dataclasses.dataclass(frozen=True)
class ToolCallSpec:
    """A tool call the chat route should answer with."""

    name: str
    arguments: Any = dataclasses.field(default_factory=dict)
    """A JSON-able value (sent JSON-encoded) or a str (sent as is, e.g. broken JSON)."""
    id: str | None = None


@dataclasses.dataclass(frozen=True)
class Reply:
    """How the upstream answers one request. ``Reply()`` is a normal 200 answer.

    Generic knobs apply to every route; the rest only to the route named in the comment.
    """

    status: int = 200
    """HTTP status; >= 400 sends an OpenAI-style ``{"error": {...}}`` body."""
    delay: float = 0.0
    """Seconds to wait before sending anything (latency; a timeout trigger)."""
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    retry_after: float | str | None = None
    """Sent as ``Retry-After`` (seconds, or a str such as an HTTP date)."""
    retry_after_ms: float | None = None
    """Sent as ``retry-after-ms``."""
    error: str | None = None
    """Error message for status >= 400 (default: the HTTP reason phrase)."""
    error_code: str | None = None
    """``error.code`` for status >= 400, e.g. ``"context_length_exceeded"``."""
    json: Any = _UNSET
    """Send exactly this JSON body (any route, any status)."""
    body: bytes | str | None = None
    """Send exactly these bytes (any route, any status); ``content_type`` says what they are."""
    content_type: str | None = None
    drop: Literal["before_headers", "after_headers"] | None = None
    """Close the connection before sending the status line, or halfway through the body."""

    # chat
    text: str | None = None
    """Answer text (default ``"Hello from <model>"``); also the transcription text."""
    chunks: Sequence[str] | None = None
    """Stream pieces (default: ``text`` split into words, spaces kept)."""
    cut_after: int | None = None
    """Stream: close the connection after this many content-bearing chunks (no ``[DONE]``)."""
    chunk_delay: float = 0.0
    """Stream: seconds between chunks."""
    structured: Any = _UNSET
    """Answer with this value JSON-encoded as the message content (structured output)."""
    tool_calls: Sequence[ToolCallSpec | Mapping[str, Any]] | None = None
    """Answer with these tool calls (``{"name": ..., "arguments": {...}}`` works too)."""
    reasoning: str | None = None
    """Also return this reasoning, in ``reasoning_field``."""
    reasoning_field: str = "reasoning_content"
    finish_reason: str | None = None
    """Default ``"tool_calls"`` when answering with tool calls, else ``"stop"``."""
    usage: Mapping[str, int] | None = None
    """Override the computed usage (also sent as the last stream chunk when asked for)."""

    # embeddings / moderations / speech / images
    embedding: Sequence[float] | None = None
    """Vector for every input (default: a deterministic vector per input text)."""
    embedding_dim: int = 8
    flagged: bool = False
    audio: bytes | None = None
    """Speech bytes (default ``b"FAKEAUDIO:" + input``)."""
    image_url: str = "https://images.example/0.png"

    # vendor wire formats (see tests.upstream_vendors)
    error_type: str | None = None
    """Anthropic ``error.type``, Gemini ``error.status``, Azure ``error.type`` (default: the
    status's own)."""
    error_reason: str | None = None
    """Gemini: add an ``ErrorInfo`` detail with this reason (``"API_KEY_INVALID"``)."""
    retry_delay: str | None = None
    """Gemini: add a ``RetryInfo`` detail with this ``retryDelay`` (``"47s"``)."""
    stream_error: str | None = None
    """Stream: after ``cut_after`` content chunks (all of them when None), send the vendor's
    in-stream error of this type (Anthropic ``overloaded_error``, Gemini ``UNAVAILABLE``) and
    end the stream."""
    block_reason: str | None = None
    """Gemini: answer 200 with ``promptFeedback.blockReason`` and no candidates."""
    thought_signature: str | None = None
    """Gemini: the ``thoughtSignature`` of each ``functionCall`` part."""


@dataclasses.dataclass
class Recorded:
    """One request the upstream received, and what became of it."""

    index: int
    route: str
    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    """The raw body (empty for multipart uploads, whose fields are in ``json``)."""
    json: Any
    """Parsed JSON body (the form fields, for multipart), or None."""
    model: str | None
    stream: bool
    started: float
    """``time.monotonic()`` when the request arrived."""
    reply: Reply | None = None
    finished: bool = False
    """The whole reply was sent."""
    client_closed: bool = False
    """The client closed the connection before the reply was complete."""
    server_dropped: bool = False
    """The upstream closed the connection on purpose (``drop``/``cut_after``)."""
    vendor: str = "openai"
    """``openai``, ``anthropic``, ``gemini`` or ``azure``: whose wire format the route is."""
    query: dict[str, str] = dataclasses.field(default_factory=dict)
    """The query string's parameters (``api-version``, ``alt``, ``key``)."""
    invalid: str | None = None
    """Why the vendor would refuse this request (it got the vendor's error), or None."""


class _Queues:
    def __init__(self) -> None:
        self.scripted: dict[tuple[str | None, str | None], deque[Reply]] = {}
        self.defaults: dict[tuple[str | None, str | None], Reply] = {}

    def take(self, route: str, model: str | None) -> Reply:
        keys = ((route, model), (None, model), (route, None), (None, None))
        for key in keys:
            queue = self.scripted.get(key)
            if queue:
                return queue.popleft()
        for key in keys:
            reply = self.defaults.get(key)
            if reply is not None:
                return reply
        return _DEFAULT_REPLY


_DEFAULT_REPLY = Reply()


class Upstream:
    """The scriptable OpenAI-compatible server. See the module docstring."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, record: bool = True) -> None:
        self.host = host
        self._port = port
        self._record = record
        self._lock = threading.Lock()
        self._queues = _Queues()
        self._requests: list[Recorded] = []
        self._stored: set[str] = set()
        """Ids of the Responses API answers stored (``store`` true): what a later
        ``previous_response_id`` may name."""
        self._counter = itertools.count(1)
        self.cloud = cloud.CloudState()
        """The cloud vendors' keys, service accounts and tokens (kept across :meth:`reset`)."""
        self._counts: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> Upstream:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._serve, name="upstream", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            raise RuntimeError("upstream failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_site())
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            assert self._runner is not None
            loop.run_until_complete(self._runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _start_site(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        server = site._server
        assert server is not None
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    # -- addresses ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what ``base_url=`` / ``<PROVIDER>_BASE_URL`` take."""
        return f"{self.url}/v1"

    # -- scripting ----------------------------------------------------------------------------
    def script(
        self,
        replies: Reply | Iterable[Reply],
        *,
        route: str | None = None,
        model: str | None = None,
    ) -> None:
        """Queue replies for the next requests (optionally only those of one route/model)."""
        items = [replies] if isinstance(replies, Reply) else list(replies)
        for item in items:
            if not isinstance(item, Reply):
                raise TypeError(f"script() takes Reply objects, got {type(item).__name__}")
        _check_route(route)
        with self._lock:
            self._queues.scripted.setdefault((route, model), deque()).extend(items)

    def set_default(
        self, reply: Reply | None, *, route: str | None = None, model: str | None = None
    ) -> None:
        """What to answer once the matching queues are empty (None restores a 200 answer)."""
        _check_route(route)
        with self._lock:
            if reply is None:
                self._queues.defaults.pop((route, model), None)
            else:
                self._queues.defaults[(route, model)] = reply

    def pending(self, *, route: str | None = None, model: str | None = None) -> int:
        """Scripted replies not yet used in the ``(route, model)`` queue."""
        with self._lock:
            return len(self._queues.scripted.get((route, model), ()))

    def reset(self) -> None:
        """Forget scripts, defaults and recorded requests (the fixture does this per test)."""
        with self._lock:
            self._queues = _Queues()
            self._requests = []
            self._counts = {}
            self._stored = set()

    # -- inspection ---------------------------------------------------------------------------
    @property
    def requests(self) -> list[Recorded]:
        """Every recorded request, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def last(self) -> Recorded:
        with self._lock:
            if not self._requests:
                raise LookupError("the upstream has not received any request")
            return self._requests[-1]

    def count(self, route: str | None = None, *, model: str | None = None) -> int:
        """Requests received (for a route and/or model)."""
        _check_route(route)
        if model is None:
            with self._lock:
                if route is None:
                    return sum(self._counts.values())
                return self._counts.get(route, 0)
        return len(self._select(route, model))

    def closed_early(self, route: str | None = None, *, model: str | None = None) -> list[Recorded]:
        """Requests whose client closed the connection before the reply was complete."""
        return [r for r in self._select(route, model) if r.client_closed]

    def wait_for(self, predicate: Callable[[Upstream], bool], timeout: float = 2.0) -> bool:
        """Poll ``predicate(self)`` until it is true (returns True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    async def await_for(self, predicate: Callable[[Upstream], bool], timeout: float = 2.0) -> bool:
        """Async form of :meth:`wait_for`."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def _select(self, route: str | None, model: str | None) -> list[Recorded]:
        _check_route(route)
        return [
            r
            for r in self.requests
            if (route is None or r.route == route) and (model is None or r.model == model)
        ]

    # -- serving ------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        route = ROUTES.get((request.method, request.path))
        vendor, path_model = "openai", None
        found_cloud = None if route else cloud.match(request.method, request.raw_path.split("?")[0])
        if found_cloud is not None:
            route, vendor, path_model = found_cloud
            if route in cloud.AUTH_ROUTES:
                return await cloud.serve_auth(self, request, route)
        if route is None:
            found = vendors.match(request.method, request.path)
            if found is None:
                return _error_response(404, f"no route {request.method} {request.path}", None, {})
            route, vendor, path_model = found
        payload: Any = None
        raw = b""
        if route in ("transcriptions", "azure_transcriptions"):
            form = await request.post()
            payload = {
                k: (v.file.read() if isinstance(v, web.FileField) else v) for k, v in form.items()
            }
        else:
            raw = await request.read()
        if raw:
            try:
                payload = orjson.loads(raw)
            except orjson.JSONDecodeError:
                payload = None
        model = path_model or (payload.get("model") if isinstance(payload, dict) else None)
        rec = Recorded(
            index=next(self._counter),
            route=route,
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=raw,
            json=payload,
            model=model if isinstance(model, str) else None,
            stream=cloud.is_stream(route, payload)
            if vendor in cloud.VENDORS
            else vendors.is_stream(route, payload)
            if vendor != "openai"
            else isinstance(payload, dict) and payload.get("stream") is True,
            started=time.monotonic(),
            vendor=vendor,
            query=dict(request.query),
        )
        with self._lock:
            self._counts[route] = self._counts.get(route, 0) + 1
            if self._record:
                self._requests.append(rec)
            rec.reply = reply = self._queues.take(route, rec.model)
        try:
            response = await self._respond(request, rec, reply)
        except asyncio.CancelledError:
            if not rec.server_dropped:
                rec.client_closed = True
            raise
        except ConnectionResetError:
            rec.client_closed = True
            raise
        rec.finished = True
        return response

    async def _respond(
        self, request: web.Request, rec: Recorded, reply: Reply
    ) -> web.StreamResponse:
        if reply.delay > 0:
            await asyncio.sleep(reply.delay)
        if reply.drop == "before_headers":
            return await _drop(request, rec)
        headers = _reply_headers(rec, reply)
        if rec.vendor in cloud.VENDORS:
            return await cloud.respond(self, request, rec, reply, headers)
        if rec.route == "responses":
            try:
                responses.check(rec.json, self._stored)
            except responses.Invalid as exc:
                rec.invalid = exc.message
                return await _send(
                    request, rec, reply, 400, exc.body(), "application/json", headers
                )
        elif rec.vendor != "openai":
            refused = vendors.validate(rec)
            if refused is not None:
                status, message = refused
                rec.invalid = message
                body = vendors.error_body(rec, status, message, None)
                return await _send(request, rec, reply, status, body, "application/json", headers)
        if reply.body is not None or reply.json is not _UNSET:
            if reply.body is not None:
                data = reply.body.encode() if isinstance(reply.body, str) else reply.body
                ctype = reply.content_type or "application/octet-stream"
            else:
                data = orjson.dumps(reply.json)
                ctype = reply.content_type or "application/json"
            return await _send(request, rec, reply, reply.status, data, ctype, headers)
        if reply.status >= 400:
            if rec.vendor == "openai":
                body = _error_body(reply.status, reply.error, reply.error_code)
            else:
                body = vendors.error_body(rec, reply.status, reply.error, reply)
            return await _send(request, rec, reply, reply.status, body, "application/json", headers)
        if rec.vendor in ("anthropic", "gemini"):
            return await _vendor_answer(request, rec, reply, headers)
        if rec.route == "responses":
            return await self._responses_answer(request, rec, reply, headers)
        if rec.vendor == "azure":
            return await _azure_answer(request, rec, reply, headers)
        if route_is_stream(rec):
            return await _stream_chat(request, rec, reply, headers)
        data, ctype = _route_body(rec, reply)
        return await _send(request, rec, reply, reply.status, data, ctype, headers)

    async def _responses_answer(
        self, request: web.Request, rec: Recorded, reply: Reply, headers: dict[str, str]
    ) -> web.StreamResponse:
        ans = _vendor_answer_of(rec, reply)
        payload = rec.json
        reasoning = reply.reasoning
        if rec.stream:
            frames, error, whole = responses.frames(
                payload, ans.pieces, ans.calls, reasoning, reply.usage
            )
            if payload.get("store", True) is not False:
                self._stored.add(whole["id"])
            return await _stream_frames(request, rec, reply, headers, frames, b"", error)
        status = "incomplete" if reply.finish_reason == "length" else "completed"
        whole = responses.response(payload, ans.text, ans.calls, reasoning, status, reply.usage)
        if payload.get("store", True) is not False:
            self._stored.add(whole["id"])
        data = orjson.dumps(whole)
        return await _send(request, rec, reply, reply.status, data, "application/json", headers)


def route_is_stream(rec: Recorded) -> bool:
    return rec.route == "chat" and rec.stream


def _check_route(route: str | None) -> None:
    known = (*ROUTES.values(), *vendors.ROUTES, *cloud.ROUTES)
    if route is not None and route not in known:
        names = sorted(set(known))
        raise ValueError(f"unknown route {route!r}; routes: {names}")


def _reply_headers(rec: Recorded, reply: Reply) -> dict[str, str]:
    if rec.vendor == "anthropic":
        headers = {"request-id": f"req_{rec.index}"}
    else:
        headers = {"x-request-id": f"req_{rec.index}"}
    if reply.retry_after is not None:
        headers["Retry-After"] = str(reply.retry_after)
    if reply.retry_after_ms is not None:
        headers["retry-after-ms"] = str(reply.retry_after_ms)
    headers.update(reply.headers)
    return headers


async def _drop(request: web.Request, rec: Recorded) -> web.StreamResponse:
    rec.server_dropped = True
    transport = request.transport
    if transport is not None:
        transport.close()
    # The closed connection cancels this handler; the sleep only bounds the wait.
    await asyncio.sleep(5)
    return web.Response(status=500)


async def _send(
    request: web.Request,
    rec: Recorded,
    reply: Reply,
    status: int,
    data: bytes,
    content_type: str,
    headers: dict[str, str],
) -> web.StreamResponse:
    if reply.drop == "after_headers":
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_type = content_type
        resp.content_length = len(data) + 1
        await resp.prepare(request)
        await resp.write(data[: len(data) // 2])
        return await _drop(request, rec)
    return web.Response(status=status, body=data, content_type=content_type, headers=headers)


def _error_body(status: int, message: str | None, code: str | None) -> bytes:
    from http import HTTPStatus

    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "error"
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 429:
        kind = "rate_limit_error"
    return orjson.dumps({"error": {"message": message or reason, "type": kind, "code": code}})


def _error_response(
    status: int, message: str, code: str | None, headers: Mapping[str, str]
) -> web.Response:
    return web.Response(
        status=status,
        body=_error_body(status, message, code),
        content_type="application/json",
        headers=dict(headers),
    )


# -- route bodies -------------------------------------------------------------------------------
def _answer_text(rec: Recorded, reply: Reply) -> str:
    if reply.structured is not _UNSET:
        return orjson.dumps(reply.structured).decode()
    if reply.text is not None:
        return reply.text
    if reply.chunks is not None:
        return "".join(reply.chunks)
    return f"Hello from {rec.model}"


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    calls = []
    for i, spec in enumerate(reply.tool_calls or ()):
        if isinstance(spec, Mapping):
            spec = ToolCallSpec(
                name=spec["name"], arguments=spec.get("arguments", {}), id=spec.get("id")
            )
        args = spec.arguments
        arguments = args if isinstance(args, str) else orjson.dumps(args).decode()
        calls.append(
            {
                "id": spec.id or f"call_{i}",
                "type": "function",
                "function": {"name": spec.name, "arguments": arguments},
            }
        )
    return calls


def _usage(rec: Recorded, reply: Reply, completion_pieces: int) -> dict[str, int]:
    if reply.usage is not None:
        return dict(reply.usage)
    prompt = 0
    payload = rec.json if isinstance(rec.json, dict) else {}
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            prompt += len(content.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion_pieces,
        "total_tokens": prompt + completion_pieces,
    }


def _chat_body(rec: Recorded, reply: Reply) -> dict[str, Any]:
    calls = _tool_calls(reply)
    text = None if calls else _answer_text(rec, reply)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    if reply.reasoning is not None:
        message[reply.reasoning_field] = reply.reasoning
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    pieces = len(calls) if calls else len(_pieces(text or ""))
    return {
        "id": f"chatcmpl-{rec.index}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": rec.model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(rec, reply, pieces),
    }


def _route_body(rec: Recorded, reply: Reply) -> tuple[bytes, str]:
    payload = rec.json if isinstance(rec.json, dict) else {}
    if rec.route == "chat":
        return orjson.dumps(_chat_body(rec, reply)), "application/json"
    if rec.route == "embeddings":
        inputs = payload.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        dim = payload.get("dimensions") or reply.embedding_dim
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": list(reply.embedding) if reply.embedding else _vector(str(x), dim),
            }
            for i, x in enumerate(items)
        ]
        tokens = sum(len(str(x).split()) for x in items)
        body = {
            "object": "list",
            "data": data,
            "model": rec.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return orjson.dumps(body), "application/json"
    if rec.route == "moderations":
        inputs = payload.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        results = [
            {
                "flagged": reply.flagged,
                "categories": {"violence": reply.flagged, "harassment": False},
                "category_scores": {"violence": 0.9 if reply.flagged else 0.01, "harassment": 0.0},
            }
            for _ in items
        ]
        body = {"id": f"modr-{rec.index}", "model": rec.model, "results": results}
        return orjson.dumps(body), "application/json"
    if rec.route == "speech":
        audio = reply.audio
        if audio is None:
            audio = b"FAKEAUDIO:" + str(payload.get("input", "")).encode()
        return audio, "audio/mpeg"
    if rec.route == "transcriptions":
        text = reply.text if reply.text is not None else "transcribed text"
        fmt = payload.get("response_format") or "json"
        if fmt in ("text", "srt", "vtt"):
            return text.encode(), "text/plain"
        body: dict[str, Any] = {"text": text}
        if fmt == "verbose_json":
            words = text.split()
            body["language"] = "english"
            body["duration"] = float(len(words))
            body["words"] = [
                {"word": w, "start": float(i), "end": float(i + 1)} for i, w in enumerate(words)
            ]
            body["segments"] = [{"id": 0, "start": 0.0, "end": float(len(words)), "text": text}]
        return orjson.dumps(body), "application/json"
    if rec.route == "images":
        n = int(payload.get("n") or 1)
        as_b64 = payload.get("response_format") == "b64_json"
        data_items = [
            {"b64_json": base64.b64encode(b"PNG-%d" % i).decode()}
            if as_b64
            else {"url": reply.image_url.replace("0.png", f"{i}.png")}
            for i in range(n)
        ]
        body = {"created": int(time.time()), "data": data_items}
        return orjson.dumps(body), "application/json"
    models = {"object": "list", "data": [{"id": "test-model", "object": "model"}]}
    return orjson.dumps(models), "application/json"


def _vector(text: str, dim: int) -> list[float]:
    rng = random.Random(text)
    return [round(rng.uniform(-1, 1), 6) for _ in range(dim)]


def _stream_events(rec: Recorded, reply: Reply) -> tuple[list[dict[str, Any]], list[bool]]:
    """The chat SSE events, and for each whether it carries content (counts for cut_after)."""
    base = {"id": f"chatcmpl-{rec.index}", "object": "chat.completion.chunk", "model": rec.model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""})]
    content = [False]
    if reply.reasoning is not None:
        for piece in _pieces(reply.reasoning):
            events.append(chunk({reply.reasoning_field: piece}))
            content.append(True)
    calls = _tool_calls(reply)
    for i, call in enumerate(calls):
        head = {"index": i, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["function"]["name"], "arguments": ""}
        events.append(chunk({"tool_calls": [head]}))
        content.append(True)
        args = call["function"]["arguments"]
        half = len(args) // 2
        for part in (args[:half], args[half:]):
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
            content.append(True)
    pieces: list[str] = []
    if not calls:
        pieces = (
            list(reply.chunks) if reply.chunks is not None else _pieces(_answer_text(rec, reply))
        )
        for piece in pieces:
            events.append(chunk({"content": piece}))
            content.append(True)
    finish = reply.finish_reason or ("tool_calls" if calls else "stop")
    events.append(chunk({}, finish))
    content.append(False)
    options = rec.json.get("stream_options") if isinstance(rec.json, dict) else None
    if isinstance(options, dict) and options.get("include_usage"):
        usage = _usage(rec, reply, len(calls) if calls else len(pieces))
        events.append({**base, "choices": [], "usage": usage})
        content.append(False)
    return events, content


async def _stream_chat(
    request: web.Request, rec: Recorded, reply: Reply, headers: dict[str, str]
) -> web.StreamResponse:
    resp = web.StreamResponse(status=200, headers={**headers, "Cache-Control": "no-cache"})
    resp.content_type = "text/event-stream"
    await resp.prepare(request)
    if reply.drop == "after_headers":
        return await _drop(request, rec)
    events, content = _stream_events(rec, reply)
    sent = 0
    for event, has_content in zip(events, content, strict=True):
        if reply.cut_after is not None and has_content and sent >= reply.cut_after:
            return await _drop(request, rec)
        if reply.chunk_delay > 0 and has_content and sent:
            await asyncio.sleep(reply.chunk_delay)
        await resp.write(b"data: " + orjson.dumps(event) + b"\n\n")
        sent += has_content
    if reply.cut_after is not None and sent >= reply.cut_after:
        return await _drop(request, rec)
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


# -- vendor answers (the shapes are in tests.upstream_vendors) ---------------------------------
def _vendor_answer_of(rec: Recorded, reply: Reply) -> vendors.Answer:
    calls = _tool_calls(reply)
    if calls:
        text = reply.text
        pieces = list(reply.chunks) if reply.chunks is not None else _pieces(text or "")
    else:
        text = _answer_text(rec, reply)
        pieces = list(reply.chunks) if reply.chunks is not None else _pieces(text)
    reasoning = _pieces(reply.reasoning) if reply.reasoning else []
    return vendors.Answer(text, pieces, calls, reasoning, _prompt_words(rec.json))


def _prompt_words(payload: Any) -> int:
    """Words of the prompt's text in any of the three shapes (a stand-in for tokens)."""
    words = 0
    if isinstance(payload, dict):
        for key in ("messages", "contents", "system", "systemInstruction"):
            words += _words(payload.get(key))
    return words


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return sum(_words(value.get(k)) for k in ("content", "parts", "text"))
    return 0


async def _vendor_answer(
    request: web.Request, rec: Recorded, reply: Reply, headers: dict[str, str]
) -> web.StreamResponse:
    ans = _vendor_answer_of(rec, reply)
    structured = None if reply.structured is _UNSET else reply.structured
    if rec.stream:
        frames, error = vendors.stream_frames(rec, reply, ans, structured)
        return await _stream_frames(request, rec, reply, headers, frames, b"", error)
    data, ctype = vendors.answer(rec, reply, ans, structured)
    return await _send(request, rec, reply, reply.status, data, ctype, headers)


async def _azure_answer(
    request: web.Request, rec: Recorded, reply: Reply, headers: dict[str, str]
) -> web.StreamResponse:
    shadow = dataclasses.replace(rec, route=vendors.AZURE_AS_OPENAI[rec.route])
    if rec.stream:
        events, content = _stream_events(shadow, reply)
        chunks = vendors.azure_chunks(events)
        frames = [(b"data: " + orjson.dumps(c) + b"\n\n", False) for c in chunks[:1]]
        frames += [
            (b"data: " + orjson.dumps(c) + b"\n\n", has)
            for c, has in zip(chunks[1:], content, strict=True)
        ]
        error = {"error": {"message": reply.error or "server error", "code": 500}}
        tail = b"data: [DONE]\n\n"
        error_frame = b"data: " + orjson.dumps(error) + b"\n\n"
        return await _stream_frames(request, rec, reply, headers, frames, tail, error_frame)
    data, ctype = _route_body(shadow, reply)
    if rec.route == "azure_chat":
        data = orjson.dumps(vendors.azure_chat(orjson.loads(data)))
    elif rec.route == "azure_embeddings":
        data = orjson.dumps(vendors.azure_embeddings(orjson.loads(data), rec.json))
    return await _send(request, rec, reply, reply.status, data, ctype, headers)


async def _stream_frames(
    request: web.Request,
    rec: Recorded,
    reply: Reply,
    headers: dict[str, str],
    frames: list[tuple[bytes, bool]],
    tail: bytes,
    error_frame: bytes,
    *,
    content_type: str = "text/event-stream",
) -> web.StreamResponse:
    """Send ``frames`` (SSE unless ``content_type`` says otherwise) then ``tail``, honouring
    ``cut_after``, ``chunk_delay``, ``stream_error`` and ``drop`` as :func:`_stream_chat`
    does."""
    resp = web.StreamResponse(status=200, headers={**headers, "Cache-Control": "no-cache"})
    resp.content_type = content_type
    await resp.prepare(request)
    if reply.drop == "after_headers":
        return await _drop(request, rec)
    sent = 0
    for frame, has_content in frames:
        if reply.cut_after is not None and has_content and sent >= reply.cut_after:
            if reply.stream_error is not None:
                break
            return await _drop(request, rec)
        if reply.chunk_delay > 0 and has_content and sent:
            await asyncio.sleep(reply.chunk_delay)
        await resp.write(frame)
        sent += has_content
    if reply.stream_error is not None:
        await resp.write(error_frame)
    elif reply.cut_after is not None and sent >= reply.cut_after:
        return await _drop(request, rec)
    elif tail:
        await resp.write(tail)
    await resp.write_eof()
    return resp


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (for connection-refused tests).

    The port was free a moment ago; nothing in the test suite listens on ports it did not
    get from the kernel, so it stays free for the test's lifetime in practice.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def _main() -> None:
    parser = argparse.ArgumentParser(description="Serve the scriptable OpenAI-compatible upstream.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="keep no request log")
    args = parser.parse_args()
    upstream = Upstream(port=args.port, record=not args.no_record).start()
    print(upstream.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        upstream.stop()


if __name__ == "__main__":
    _main()
