"""The model endpoints: one short path from an HTTP request to the gateway and back.

:func:`handle` is the whole request path, in order: authenticate, read the bounded body,
parse and validate it (a mistake is a 400 before any upstream is touched), pick the gateway
the client named, pass the key's limits, call ``gateway.acomplete``, send the answer (JSON,
bytes or SSE) with the ``x-msgflux-*`` headers. What the metrics and the access log need is
noted in the request's :class:`~.exchange.Exchange` on the way; the gateway holds every
routing decision.

Fidelity: the request's fields go to the gateway as the client sent them (only ``model`` is
the gateway's business) and the answer comes back as the upstream sent it, with ``model`` set
to the gateway name the client used. Stream chunks are relayed as they arrive, every chunk
that was ready together written at once (:mod:`.batch`), ending with ``data: [DONE]``, or
with an error event when the stream broke after its first chunk.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import orjson

from msgflux.exceptions import Attempt
from msgflux.models.gateway.raw import RawAnswer, RawStream
from msgflux.models.request import (
    CHAT,
    EMBEDDINGS,
    IMAGES,
    MODERATIONS,
    SPEECH,
    TRANSCRIPTIONS,
    Request,
    from_openai,
)
from msgflux.server import exchange
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
from msgflux.server.auth import Principal
from msgflux.server.batch import batches
from msgflux.server.errors import HTTPError, from_gateway, from_validation, stream_error_event
from msgflux.server.runtime import Route, Runtime

__all__ = ["ENDPOINTS", "Endpoint", "Respond", "authenticate", "handle", "relay"]

logger = logging.getLogger("msgflux.server")


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A model endpoint: the request kind it takes and the gateway type that serves it."""

    path: str
    kind: str
    gateway_type: str
    multipart: bool = False


ENDPOINTS = {
    e.path: e
    for e in (
        Endpoint("/chat/completions", CHAT, "chat_completion"),
        Endpoint("/embeddings", EMBEDDINGS, "text_embedder"),
        Endpoint("/moderations", MODERATIONS, "moderation"),
        Endpoint("/audio/speech", SPEECH, "text_to_speech"),
        Endpoint("/audio/transcriptions", TRANSCRIPTIONS, "speech_to_text", multipart=True),
        Endpoint("/images/generations", IMAGES, "text_to_image"),
    )
}

_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"
_AUDIO_TYPES = {
    "mp3": b"audio/mpeg",
    "opus": b"audio/opus",
    "aac": b"audio/aac",
    "flac": b"audio/flac",
    "wav": b"audio/wav",
    "pcm": b"audio/pcm",
}


# -- who, what and where ------------------------------------------------------------------------
def authenticate(runtime: Runtime, scope: Scope) -> Principal:
    principal = runtime.keys.authenticate(scope["headers"])
    if principal is None:
        raise HTTPError(
            401,
            "missing or invalid API key: send it as `Authorization: Bearer <key>` "
            "(or `x-api-key: <key>`)",
            code="invalid_api_key",
        )
    exchange.identified(principal)
    return principal


def _parse_json(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(
            400, f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise HTTPError(400, "the request body must be a JSON object", code="invalid_json")
    return payload


def _parse_multipart(scope: Scope, body: bytes) -> tuple[dict[str, Any], tuple[str, bytes]]:
    """The form fields and the uploaded ``file`` of a multipart/form-data body."""
    ctype = header(scope, b"content-type") or b""
    if not ctype.lower().startswith(b"multipart/form-data"):
        raise HTTPError(400, "send the audio as multipart/form-data with a `file` field")
    message = BytesParser(policy=HTTP).parsebytes(b"content-type: " + ctype + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise HTTPError(400, "the multipart body could not be parsed", code="invalid_multipart")
    fields: dict[str, Any] = {}
    file: tuple[str, bytes] | None = None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if name == "file":
            filename = part.get_filename() or "audio"
            file = (filename, data)
        elif name in ("timestamp_granularities[]", "timestamp_granularities"):
            fields.setdefault("timestamp_granularities", []).append(data.decode())
        else:
            fields[name] = data.decode("utf-8", "replace")
    if file is None:
        raise HTTPError(400, "file is required: the audio to transcribe", param="file")
    if "temperature" in fields:
        try:
            fields["temperature"] = float(fields["temperature"])
        except ValueError:
            raise HTTPError(400, "temperature must be a number", param="temperature") from None
    return fields, file


def _payload(ep: Endpoint, scope: Scope, body: bytes) -> tuple[str, dict[str, Any], Any]:
    """(gateway name, the client's fields, the uploaded file of a transcription)."""
    file = None
    if ep.multipart:
        payload, file = _parse_multipart(scope, body)
    else:
        payload = _parse_json(body)
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise HTTPError(400, "model is required: the name of a configured gateway", param="model")
    return model, payload, file


def _request(ep: Endpoint, payload: dict[str, Any], file: Any) -> Request:
    """The validated canonical request (a mistake is a 400 naming the field)."""
    try:
        return from_openai(ep.kind, payload, file=file)
    except (TypeError, ValueError) as exc:
        raise from_validation(exc) from None


def _route(runtime: Runtime, principal: Principal, name: str, ep: Endpoint) -> Route:
    route = runtime.routes.get(name)
    if route is None:
        names = [n for n in runtime.routes if principal.allows(n)]
        raise HTTPError(
            404,
            f"The model `{name}` does not exist. Configured models: {', '.join(names) or 'none'}",
            param="model",
            code="model_not_found",
        )
    if not principal.allows(name):
        raise HTTPError(
            403, f"this API key may not use the model `{name}`", param="model", code="forbidden"
        )
    if route.kind != ep.kind:
        serving = [
            n for n, r in runtime.routes.items() if r.kind == ep.kind and principal.allows(n)
        ]
        raise HTTPError(
            400,
            f"`{name}` is a {route.type} gateway; /v1{ep.path} serves {ep.gateway_type} "
            f"gateways: {', '.join(serving) or 'none configured'}",
            param="model",
            code="wrong_model_type",
        )
    return route


# -- the answer's headers -----------------------------------------------------------------------
def _busy(attempts: Sequence[Attempt]) -> float:
    """Seconds covered by the attempts (their union: hedged attempts overlap)."""
    spans = sorted((a.started_at, a.started_at + a.duration) for a in attempts if a.skipped is None)
    total = 0.0
    end = float("-inf")
    for start, stop in spans:
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def _overhead_ms(began: float, attempts: Sequence[Attempt]) -> bytes:
    return f"{max(0.0, (time.time() - began - _busy(attempts)) * 1000):.3f}".encode()


def _headers(answer: RawAnswer | RawStream, began: float) -> Headers:
    attempts = answer.attempts
    out: Headers = [
        (b"x-msgflux-deployment", answer.deployment.encode()),
        (b"x-msgflux-attempts", str(sum(1 for a in attempts if a.skipped is None)).encode()),
        (b"x-msgflux-fallbacks", ",".join(answer.fallbacks).encode()),
        (b"x-msgflux-overhead-ms", _overhead_ms(began, attempts)),
    ]
    if answer.request_id:
        out.append((b"x-request-id", answer.request_id.encode()))
    return out


def _error_headers(exc: BaseException, began: float) -> Headers:
    attempts = getattr(exc, "attempts", None) or []
    return [
        (b"x-msgflux-attempts", str(sum(1 for a in attempts if a.skipped is None)).encode()),
        (b"x-msgflux-overhead-ms", _overhead_ms(began, attempts)),
    ]


# -- sending the answer -------------------------------------------------------------------------
async def _send_answer(
    send: Send,
    answer: RawAnswer,
    name: str,
    ep: Endpoint,
    payload: dict[str, Any],
    headers: Headers,
) -> None:
    body = answer.body
    if isinstance(body, dict):
        if ep.kind == CHAT or "model" in body:
            body["model"] = name
        await send_bytes(send, 200, orjson.dumps(body), JSON, headers)
    elif isinstance(body, (bytes, bytearray)):
        meta = getattr(answer.response, "metadata", None) or {}
        ctype = meta.get("content_type") if isinstance(meta, dict) else None
        if isinstance(ctype, str) and ctype:
            content_type = ctype.encode()
        else:
            fmt = str(payload.get("response_format") or "mp3")
            content_type = _AUDIO_TYPES.get(fmt, b"application/octet-stream")
        await send_bytes(send, 200, bytes(body), content_type, headers)
    elif isinstance(body, str):
        await send_bytes(send, 200, body.encode(), b"text/plain; charset=utf-8", headers)
    else:
        await send_bytes(send, 200, orjson.dumps(body), JSON, headers)


def _wants_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


async def _send_stream(
    send: Send,
    stream: RawStream,
    name: str,
    payload: dict[str, Any],
    headers: Headers,
    watch: Watch,
) -> None:
    # The gateway asks upstreams for usage (rpm/tpm accounting needs it); a client that did
    # not ask for the usage chunk does not get one.
    drop_usage = not _wants_usage(payload)
    dumps = orjson.dumps

    def encode(chunks: list[dict[str, Any]]) -> bytes:
        parts = []
        for chunk in chunks:
            if drop_usage and not chunk.get("choices") and "usage" in chunk:
                continue
            chunk["model"] = name
            parts.append(b"data: " + dumps(chunk) + b"\n\n")
        return b"".join(parts)

    async def flush(chunks: list[dict[str, Any]]) -> None:
        body = encode(chunks)
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})

    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + headers})
    try:
        rest = await batches(stream.__aiter__(), flush)
        tail = encode(rest) + _DONE  # the last chunks and the end in one write
    except Exception as exc:  # StreamInterruptedError, or an upstream that broke the protocol
        logger.warning("stream of %s broke after its first chunk: %s", name, exc)
        tail = stream_error_event(exc)
    watch.finish()
    await send({"type": "http.response.body", "body": tail, "more_body": False})


# -- the request path ---------------------------------------------------------------------------
async def handle(
    runtime: Runtime, ep: Endpoint, scope: Scope, receive: Receive, send: Send
) -> None:
    """One model request (see the module docstring). Raises :class:`HTTPError` before the
    response starts; a client hang-up cancels the gateway call and ends quietly."""
    began = time.time()
    principal = authenticate(runtime, scope)
    body = await read_body(scope, receive, runtime.config.server.max_body_bytes)
    name, payload, file = _payload(ep, scope, body)
    route = _route(runtime, principal, name, ep)
    request = _request(ep, payload, file)

    async def respond(answer: RawAnswer | RawStream, headers: Headers, watch: Watch) -> None:
        if isinstance(answer, RawStream):
            await _send_stream(send, answer, name, payload, headers, watch)
        else:
            watch.finish()
            await _send_answer(send, answer, name, ep, payload, headers)

    await relay(route, request, receive, began, respond)


Respond = Callable[[RawAnswer | RawStream, Headers, Watch], Awaitable[None]]
"""Sends the gateway's answer in an API's format (given the ``x-msgflux-*`` headers)."""


async def relay(
    route: Route, request: Request, receive: Receive, began: float, respond: Respond
) -> None:
    """The part of a model request every API format shares: call the gateway (a failure is
    an :class:`HTTPError`), hand the answer to ``respond``, cancel the call when the client
    hangs up (ending quietly), close the stream whatever happened. The request first passes
    its key's limits (:func:`.exchange.admit`: a 429 before the gateway is called)."""
    await exchange.admit(route)
    watch = Watch(receive)
    answer: RawAnswer | RawStream | None = None
    try:
        try:
            answer = await route.gateway.acomplete(request)
        except (TypeError, ValueError) as exc:  # a caller mistake the gateway found
            raise from_validation(exc) from None
        except Exception as exc:
            exchange.failed(exc)
            error = from_gateway(exc)
            error.headers += _error_headers(exc, began)
            raise error from None
        exchange.answered(answer)
        await respond(answer, _headers(answer, began), watch)
    except asyncio.CancelledError:
        if not watch.absorb():
            raise
    finally:
        watch.close()
        if isinstance(answer, RawStream):
            await _close_quietly(answer)


async def _close_quietly(stream: RawStream) -> None:
    try:
        await stream.aclose()
    except Exception:  # the stream already ended; closing twice must not fail the response
        logger.debug("closing a finished stream failed", exc_info=True)
