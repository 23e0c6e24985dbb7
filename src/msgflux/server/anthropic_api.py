"""Anthropic's Messages API on the server: ``POST /v1/messages`` and
``/v1/messages/count_tokens`` (each also without ``/v1``), on the configured chat gateways.

The request path is the OpenAI endpoints' (:func:`.endpoints.relay`: the same gateway call,
``x-msgflux-*`` headers, hang-up handling); only the format differs, translated by the pure
functions of :mod:`.messages` (requests) and :mod:`.message_answers` (answers). Every error
is Anthropic's body ``{"type": "error", "error": {"type", "message"}}`` with the status the
OpenAI endpoints use, except that every deployment overloaded is Anthropic's 529
``overloaded_error``.

The key may come as ``x-api-key`` (what Anthropic clients send) or ``Authorization: Bearer``;
``anthropic-version``, when sent, must be a ``YYYY-MM-DD`` version and is otherwise ignored
(each deployment speaks its own version upstream).

``count_tokens`` is answered by the upstream, never estimated: the gateway's first deployment
whose breaker is not open must be an ``anthropic`` one, which gets the request (the client's
body, ``model`` set to the deployment's model id) once, with no fallback; any other deployment
there is a 404 ``not_found_error`` saying so.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import orjson

from msgflux import _transport
from msgflux.models.gateway.raw import RawAnswer, RawStream
from msgflux.models.providers.anthropic import AnthropicChatCompletion
from msgflux.models.request import CHAT, Request
from msgflux.server.asgi import (
    JSON,
    Headers,
    Receive,
    Scope,
    Send,
    Watch,
    header,
    read_body,
    send_bytes,
)
from msgflux.server.batch import batches
from msgflux.server.endpoints import Endpoint, _parse_json, _route, authenticate, relay
from msgflux.server.errors import HTTPError, from_gateway
from msgflux.server.message_answers import MessageEvents, error_body, error_type, to_message
from msgflux.server.messages import to_request
from msgflux.server.runtime import Route, Runtime

__all__ = ["PATHS", "serve"]

logger = logging.getLogger("msgflux.server")

MESSAGES = Endpoint("/messages", CHAT, "chat_completion")
COUNT_TOKENS = Endpoint("/messages/count_tokens", CHAT, "chat_completion")
PATHS = {ep.path: ep for ep in (MESSAGES, COUNT_TOKENS)}
"""The routes this module serves (without ``/v1``)."""

_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_VERSION = re.compile(rb"\d{4}-\d{2}-\d{2}")
_COUNT_TIMEOUT = 60.0
"""Seconds a ``count_tokens`` call may take when its deployment sets no ``timeout``."""


async def serve(
    runtime: Runtime, path: str, method: str, scope: Scope, receive: Receive, send: Send
) -> None:
    """Answer one request to ``path`` (a key of :data:`PATHS`), errors in Anthropic's shape."""
    try:
        if method != "POST":
            raise HTTPError(405, f"{method} is not allowed on {scope['path']}; use POST")
        version = header(scope, b"anthropic-version")
        if version is not None and not _VERSION.fullmatch(version):
            raise HTTPError(
                400,
                f"anthropic-version: must be a version date like 2023-06-01, got "
                f"{version.decode('latin-1')[:40]!r}",
            )
        if path == COUNT_TOKENS.path:
            await _count_tokens(runtime, scope, receive, send)
        else:
            await _messages(runtime, scope, receive, send)
    except HTTPError as exc:
        await _send_error(send, exc)
    except Exception:
        logger.exception("unexpected error serving %s %s", method, scope["path"])
        await _send_error(send, HTTPError(500, "internal server error"))


async def _send_error(send: Send, error: HTTPError) -> None:
    status = 529 if error.code == "upstream_overloaded" else error.status
    body = orjson.dumps(error_body(error_type(status), error.message))
    await send_bytes(send, status, body, JSON, error.headers)


async def _read(
    runtime: Runtime, scope: Scope, receive: Receive, ep: Endpoint
) -> tuple[Route, Request, dict[str, Any]]:
    principal = authenticate(runtime, scope)
    body = await read_body(scope, receive, runtime.config.server.max_body_bytes)
    payload = _parse_json(body)
    version = header(scope, b"anthropic-version")
    try:
        name, request = to_request(
            payload, count=ep is COUNT_TOKENS, version=version.decode() if version else None
        )
    except (TypeError, ValueError) as exc:
        raise HTTPError(400, str(exc)) from None
    return _route(runtime, principal, name, ep), request, payload


async def _messages(runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    began = time.time()
    route, request, _ = await _read(runtime, scope, receive, MESSAGES)
    name = route.name

    async def respond(answer: RawAnswer | RawStream, headers: Headers, watch: Watch) -> None:
        if answer.request_id:
            headers.append((b"request-id", answer.request_id.encode()))
        if isinstance(answer, RawStream):
            await _send_stream(send, answer, name, headers, watch)
            return
        try:
            body = orjson.dumps(to_message(answer.body, name))
        except ValueError as exc:
            raise HTTPError(502, f"{answer.deployment}: {exc}") from None
        watch.finish()
        await send_bytes(send, 200, body, JSON, headers)

    await relay(route, request, receive, began, respond)


async def _send_stream(
    send: Send, stream: RawStream, name: str, headers: Headers, watch: Watch
) -> None:
    events = MessageEvents(name)
    feed = events.feed

    async def flush(chunks: list[dict[str, Any]]) -> None:
        body = b"".join([feed(chunk) for chunk in chunks])
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})

    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + headers})
    try:
        rest = await batches(stream.__aiter__(), flush)
        tail = b"".join([feed(chunk) for chunk in rest]) + events.end()
    except Exception as exc:  # StreamInterruptedError, or a chunk with no Anthropic form
        logger.warning("stream of %s broke after its first chunk: %s", name, exc)
        tail = events.error(exc)
    watch.finish()
    await send({"type": "http.response.body", "body": tail, "more_body": False})


# -- count_tokens -------------------------------------------------------------------------------
async def _count_tokens(runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    route, request, payload = await _read(runtime, scope, receive, COUNT_TOKENS)
    gateway = route.gateway
    health = (await asyncio.to_thread(gateway.health))["deployments"]
    deployment, model = next(
        (
            (n, m)
            for n, m in zip(gateway.model_names, gateway.models, strict=True)
            if health[n]["status"] != "down"
        ),
        (gateway.model_names[0], gateway.models[0]),
    )
    if not isinstance(model, AnthropicChatCompletion):
        raise HTTPError(
            404,
            f"count_tokens is answered by an Anthropic deployment's upstream; the deployment "
            f"`{route.name}` would use now is `{deployment}` ({model.provider}/"
            f"{model.model_id}), which has no token counting endpoint",
        )
    try:
        answer, request_id = await _upstream_count(model, request, payload)
    except Exception as exc:
        raise from_gateway(exc) from None
    headers: Headers = [(b"x-msgflux-deployment", deployment.encode())]
    if request_id:
        headers.append((b"request-id", request_id.encode()))
    await send_bytes(send, 200, answer, JSON, headers)


async def _upstream_count(
    model: AnthropicChatCompletion, request: Request, payload: dict[str, Any]
) -> tuple[bytes, str | None]:
    """One ``count_tokens`` call to the deployment's upstream, with its URL, key and
    version: the upstream's JSON answer and request id."""
    path, query = model._path(request)
    endpoint = model._endpoint(path + "/count_tokens", query)
    data = orjson.dumps({**payload, "model": model.model_id})
    timeout = model.timeout if model.timeout is not None else _COUNT_TIMEOUT
    resp = await _transport.apost(endpoint, data, timeout)
    return resp.content, resp.headers.get(model.request_id_header)
