"""The path every model request takes, whatever its API family.

:func:`handle` is the whole request path, in order: authenticate, read the bounded body,
parse it, pick the gateway the client named, build the request (a chat body is validated
here, a mistake being a 400 before any upstream is touched; another family's body travels as
it is), pass the key's limits, call ``gateway.acomplete``, send the answer (JSON, bytes or
SSE) with the ``x-msgflux-*`` headers. What the metrics and the access log need is noted in
the request's :class:`~.exchange.Exchange` on the way; the gateway holds every routing
decision, :mod:`msgflux.formats` every translation.

An :class:`Endpoint` says what a path takes: the request kind, the gateway type that serves
it, the API family of its bodies and errors, and how to read a body. The API modules
(:mod:`.openai_api`, :mod:`.anthropic_api`) declare theirs; :mod:`.routes` maps the paths.

Fidelity: on a native lane the answer goes back as the upstream sent it, only ``model`` named
after the gateway the client used; a stream's events are relayed as each upstream read
brought them. A translated stream's chunks are relayed as they arrive, every chunk that was
ready together written at once (:mod:`.batch`). A stream broken after its first event ends
with its family's error event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson

from msgflux._secrets import scrub
from msgflux.exceptions import Attempt
from msgflux.formats import Family, family
from msgflux.models.gateway.cache import NotCached
from msgflux.models.gateway.raw import RawAnswer, RawStream
from msgflux.models.request import CHAT, Request, from_openai
from msgflux.server import exchange
from msgflux.server.asgi import (
    JSON,
    Headers,
    Receive,
    Scope,
    Send,
    Watch,
    read_body,
    send_bytes,
)
from msgflux.server.auth import Principal
from msgflux.server.cache_headers import cache_headers, cache_options, not_cached, only_cached
from msgflux.server.errors import HTTPError, from_gateway, from_validation
from msgflux.server.runtime import Route, Runtime

__all__ = [
    "Endpoint",
    "Parse",
    "Respond",
    "authenticate",
    "forwarded_headers",
    "handle",
    "may_use",
    "parse_json",
    "relay",
    "route_for",
    "send_family_error",
    "send_stream",
]

logger = logging.getLogger("msgflux.server")

Parse = Callable[[Scope, bytes], tuple[dict[str, Any], Any]]
"""Reads a body: ``(the client's fields, the uploaded file of a transcription or None)``."""

Respond = Callable[[Send, RawAnswer, dict[str, Any], Headers], Awaitable[None]]
"""Sends a whole answer (given the client's fields and the ``x-msgflux-*`` headers)."""


def parse_json(scope: Scope, body: bytes) -> tuple[dict[str, Any], Any]:
    """A JSON object body (a 400 for anything else)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(
            400, f"the request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
    if not isinstance(payload, dict):
        raise HTTPError(400, "the request body must be a JSON object", code="invalid_json")
    return payload, None


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A model endpoint: the request kind it takes, the gateway type that serves it, the API
    family of its bodies, answers and errors, and how a body is read."""

    path: str
    kind: str
    gateway_type: str
    family: str = "chat"
    parse: Parse = parse_json
    respond: Respond | None = None
    """How a whole answer of a kind with no family form is sent (speech is bytes); None:
    the family's JSON."""


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


def may_use(runtime: Runtime, principal: Principal, ep: Endpoint) -> None:
    """Refuse at once when no gateway serves ``ep`` for this key (a 404 when none is
    configured, a 403 when the key may use none of them): the body is not worth reading."""
    serving = [name for name, route in runtime.routes.items() if route.kind == ep.kind]
    if not serving:
        raise HTTPError(
            404,
            f"no {ep.gateway_type} gateway is configured: /v1{ep.path} serves none",
            code="model_not_found",
        )
    if not any(principal.allows(name) for name in serving):
        raise HTTPError(
            403,
            f"this API key may not use any {ep.gateway_type} gateway (/v1{ep.path})",
            code="forbidden",
        )


def route_for(runtime: Runtime, principal: Principal, name: Any, ep: Endpoint) -> Route:
    """The gateway ``name`` names, if the key may use it and it serves ``ep``'s kind."""
    if not isinstance(name, str) or not name:
        raise HTTPError(400, "model is required: the name of a configured gateway", param="model")
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


def _request(
    route: Route, ep: Endpoint, payload: dict[str, Any], file: Any, scope: Scope
) -> Request:
    """The request the gateway gets (a mistake the library finds is a 400 naming the field)."""
    try:
        if ep.kind != CHAT:
            return from_openai(ep.kind, payload, file=file)
        headers = forwarded_headers(scope, family(ep.family))
        return route.gateway.request(payload, api=ep.family, headers=headers)
    except (TypeError, ValueError) as exc:
        raise from_validation(exc) from None


def forwarded_headers(scope: Scope, fam: Family) -> dict[str, str] | None:
    """The request's headers of ``fam``'s own (``anthropic-beta``...), which a native lane
    passes on."""
    names = fam.forward_headers
    if not names:
        return None
    return {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in scope["headers"]
        if k.decode("latin-1") in names
    }


# -- the answer's headers -----------------------------------------------------------------------
def _busy(attempts: Sequence[Attempt]) -> float:
    """Seconds covered by the attempts (their union: hedged attempts overlap)."""
    if len(attempts) == 1:
        return attempts[0].duration if attempts[0].skipped is None else 0.0
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
    dropped = answer.dropped
    if dropped:
        out.append((b"x-msgflux-dropped", ",".join(dropped).encode()))
    request_id = answer.request_id
    if request_id:
        # The upstream's one header a client sees, scrubbed (an upstream may echo its key),
        # under the family's own name and under ours.
        value = scrub(request_id).encode("latin-1", "replace")
        out.append((answer.family.request_id_header.encode(), value))
        out.append((b"x-msgflux-upstream-request-id", value))
    return out + cache_headers(answer)


def _error_headers(exc: BaseException, began: float) -> Headers:
    attempts = getattr(exc, "attempts", None) or []
    return [
        (b"x-msgflux-attempts", str(sum(1 for a in attempts if a.skipped is None)).encode()),
        (b"x-msgflux-overhead-ms", _overhead_ms(began, attempts)),
    ]


async def send_family_error(send: Send, error: HTTPError, fam: Family) -> None:
    """An error response in ``fam``'s shape (OpenAI's for chat, Anthropic's for messages)."""
    status, body = fam.error(
        error.status, error.message, type=error.type, param=error.param, code=error.code
    )
    await send_bytes(send, status, body, JSON, error.headers)


# -- sending the answer -------------------------------------------------------------------------
_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


async def send_stream(
    send: Send,
    stream: RawStream,
    name: str,
    headers: Headers,
    watch: Watch,
    tap: Callable[[bytes], None] | None = None,
) -> None:
    """Send ``stream`` as SSE naming ``name`` (``tap`` sees each write's bytes). Events that
    arrive together leave together: the server writes what one pass of its loop sent at once."""
    await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS + headers})
    try:
        async for data in stream.sse(name):
            if tap is not None:
                tap(data)
            await send({"type": "http.response.body", "body": data, "more_body": True})
    except Exception as exc:  # the family's error event was the last thing sent
        logger.warning("stream of %s broke after its first event: %s", name, exc)
    watch.finish()
    await send({"type": "http.response.body", "body": b"", "more_body": False})


# -- the request path ---------------------------------------------------------------------------
async def handle(
    runtime: Runtime, ep: Endpoint, scope: Scope, receive: Receive, send: Send
) -> None:
    """One model request (see the module docstring). Errors before the response starts are
    sent in the endpoint's family shape; a client hang-up cancels the gateway call and ends
    quietly."""
    fam = family(ep.family)
    try:
        began = time.time()
        principal = authenticate(runtime, scope)
        may_use(runtime, principal, ep)  # before reading a byte of the body
        body = await read_body(scope, receive, runtime.config.server.max_body_bytes)
        payload, file = ep.parse(scope, body)
        name = payload.get("model")
        route = route_for(runtime, principal, name, ep)
        request = _request(route, ep, payload, file, scope)
        assert isinstance(name, str)

        async def respond(answer: RawAnswer | RawStream, headers: Headers, watch: Watch) -> None:
            if isinstance(answer, RawStream):
                await send_stream(send, answer, name, headers, watch)
                return
            watch.finish()
            if ep.respond is not None:
                await ep.respond(send, answer, payload, headers)
            else:
                await send_bytes(send, 200, answer.json(name), JSON, headers)

        await relay(route, request, receive, began, respond, cache_options(route, scope))
    except HTTPError as exc:
        await send_family_error(send, exc, fam)


async def relay(
    route: Route,
    request: Request,
    receive: Receive,
    began: float,
    respond: Callable[[RawAnswer | RawStream, Headers, Watch], Awaitable[None]],
    options: Mapping[str, Any] | None = None,
) -> None:
    """The part of a model request every API shares: call the gateway (a failure is an
    :class:`HTTPError`), hand the answer to ``respond``, cancel the call when the client
    hangs up (ending quietly), close the stream whatever happened. The request first passes
    its key's limits (:func:`.exchange.admit`: a 429 before the gateway is called);
    ``options`` are the call's per-call options (its cache controls)."""
    await exchange.admit(route)
    options = only_cached(dict(options or {}))
    watch = Watch(receive)
    answer: RawAnswer | RawStream | None = None
    try:
        try:
            answer = await route.gateway.acomplete(request, **options)
        except NotCached:
            raise not_cached() from None
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
