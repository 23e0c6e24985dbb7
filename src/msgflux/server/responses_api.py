"""OpenAI's Responses API on the server: ``POST /v1/responses`` (JSON and SSE),
``GET /v1/responses/{id}``, ``DELETE /v1/responses/{id}`` and
``GET /v1/responses/{id}/input_items`` (each also without ``/v1``), on the chat gateways.

``POST`` is a model endpoint like the others (:func:`.endpoints.relay`: keys, limits, budgets,
metrics, the access log, the ``x-msgflux-*`` headers) in the ``responses`` family: an
``openai`` or ``azure`` deployment gets the request as the client sent it (a native lane; the
Codex CLI's tools and fields pass untouched), any other gets it translated
(:mod:`msgflux.formats.openai_responses`), and the answer comes back as a Responses
``response`` or its event stream either way.

**Stored conversations.** A response is stored unless the client says ``store: false`` (as
OpenAI's default), with its turn's input items, under the client key's name
(:mod:`.responses_store`: process memory, or Redis with ``server.state`` so any worker or
instance continues any conversation; one key never sees another's). ``previous_response_id``
continues one: the deployment whose upstream stored it (a native lane with ``store`` on) gets
the id passed through; any other gets the whole conversation rebuilt from the store. An id
the store does not know (never stored, expired, another key's) is a 404 in OpenAI's shape,
before any deployment is called.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

from msgflux._transport import SSEDecoder
from msgflux.formats import RESPONSES, family
from msgflux.formats.openai_responses import expand, input_items
from msgflux.models.gateway.raw import RawAnswer, RawStream
from msgflux.models.native import native_request
from msgflux.models.request import CHAT
from msgflux.server.asgi import JSON, Headers, Receive, Scope, Send, Watch, read_body, send_bytes
from msgflux.server.cache_headers import cache_options
from msgflux.server.endpoints import (
    Endpoint,
    authenticate,
    forwarded_headers,
    may_use,
    parse_json,
    relay,
    route_for,
    send_family_error,
    send_stream,
)
from msgflux.server.errors import HTTPError, from_validation
from msgflux.server.responses_store import ResponseStore, StoreUnavailable, history
from msgflux.server.runtime import Runtime

if TYPE_CHECKING:
    from msgflux.server.app import App

__all__ = ["ENDPOINT", "PREFIX", "create", "item_route"]

logger = logging.getLogger("msgflux.server")

ENDPOINT = Endpoint("/responses", CHAT, "chat_completion", RESPONSES)
PREFIX = "/responses/"
_DONE = (b"event: response.completed", b"event: response.incomplete")


def _not_found(what: str, param: str | None = None, code: str | None = None) -> HTTPError:
    return HTTPError(404, what, param=param, code=code, type="invalid_request_error")


def _unavailable(exc: StoreUnavailable) -> HTTPError:
    return HTTPError(503, f"the response store is unreachable: {exc}", code="store_unavailable")


def _with_ids(items: list[Any]) -> list[Any]:
    """Input items as the store keeps them: each with an ``id`` (``input_items`` lists them)."""
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and "id" not in item:
            item = {"id": f"item_{time.monotonic_ns():x}_{i}", **item}
        out.append(item)
    return out


class _Final:
    """Watches a stream's SSE bytes for the response it ends with (what the store keeps)."""

    __slots__ = ("response",)

    def __init__(self) -> None:
        self.response: dict[str, Any] | None = None

    def __call__(self, data: bytes) -> None:
        if not any(done in data for done in _DONE):
            return
        decoder = SSEDecoder(len(data) + 1)
        for name, event in decoder.feed(data) + decoder.end():
            if name in ("response.completed", "response.incomplete"):
                payload = orjson.loads(event)
                response = payload.get("response") if isinstance(payload, dict) else None
                if isinstance(response, dict):
                    self.response = response


async def create(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/responses`` (see the module docstring)."""
    fam = family(RESPONSES)
    store: ResponseStore = app.ops.responses
    try:
        began = time.time()
        principal = authenticate(runtime, scope)
        may_use(runtime, principal, ENDPOINT)
        body = await read_body(scope, receive, runtime.config.server.max_body_bytes)
        payload, _ = parse_json(scope, body)
        name = payload.get("model")
        route = route_for(runtime, principal, name, ENDPOINT)
        assert isinstance(name, str)
        owner = principal.name
        headers = forwarded_headers(scope, fam)
        previous = payload.get("previous_response_id")
        expanded, pinned = payload, None
        if previous is not None:
            if not isinstance(previous, str) or not previous:
                raise HTTPError(
                    400, "previous_response_id must be a response id", param="previous_response_id"
                )
            try:
                found = await history(store, owner, previous)
            except StoreUnavailable as exc:
                raise _unavailable(exc) from None
            except ValueError as exc:
                raise from_validation(exc) from None
            if found is None:
                raise _not_found(
                    f"Previous response with id '{previous}' not found.",
                    "previous_response_id",
                    "previous_response_not_found",
                )
            items, last = found
            expanded = expand(payload, items)
            if last.get("upstream_stored"):
                pinned = str(last.get("deployment"))
        try:
            request = route.gateway.request(expanded, api=RESPONSES, headers=headers)
            if pinned is not None:
                # The deployment whose upstream stored the conversation continues it there.
                request.native_for = {pinned: native_request(fam, payload, headers)}
            keep = payload.get("store", True) is not False
            own_input = _with_ids(input_items(payload)) if keep else []
        except (TypeError, ValueError) as exc:
            raise from_validation(exc) from None

        async def respond(answer: RawAnswer | RawStream, out: Headers, watch: Watch) -> None:
            final: dict[str, Any] | None
            if isinstance(answer, RawStream):
                tap = _Final()
                await send_stream(send, answer, name, out, watch, tap)
                final = tap.response
            else:
                watch.finish()
                data = answer.json(name)
                await send_bytes(send, 200, data, JSON, out)
                final = orjson.loads(data)
            if keep and final is not None and isinstance(final.get("id"), str):
                record = {
                    "response": final,
                    "input": own_input,
                    "previous": previous,
                    "deployment": answer.deployment,
                    "upstream_stored": answer.native,
                }
                await store.put(owner, final["id"], record)

        await relay(route, request, receive, began, respond, cache_options(route, scope))
    except HTTPError as exc:
        await send_family_error(send, exc, fam)


def item_route(rest: str, method: str) -> Any:
    """The handler of ``/v1/responses/{id}`` (GET, DELETE) or ``.../input_items`` (GET)."""
    response_id, _, tail = rest.partition("/")
    if not response_id or tail not in ("", "input_items"):
        raise HTTPError(404, f"unknown path /v1/responses/{rest}", code="unknown_url")
    allowed = ("GET", "DELETE") if tail == "" else ("GET",)
    if method not in allowed:
        raise HTTPError(
            405,
            f"{method} is not allowed on /v1/responses/{rest}; use {' or '.join(allowed)}",
            code="method_not_allowed",
        )

    async def serve(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        fam = family(RESPONSES)
        try:
            owner = authenticate(runtime, scope).name
            store: ResponseStore = app.ops.responses
            try:
                if method == "DELETE":
                    if not await store.delete(owner, response_id):
                        raise _not_found(f"Response with id '{response_id}' not found.")
                    result = {"id": response_id, "object": "response", "deleted": True}
                    await send_bytes(send, 200, orjson.dumps(result), JSON)
                    return
                record = await store.get(owner, response_id)
            except StoreUnavailable as exc:
                raise _unavailable(exc) from None
            if record is None:
                raise _not_found(f"Response with id '{response_id}' not found.")
            if tail == "":
                await send_bytes(send, 200, orjson.dumps(record.get("response")), JSON)
            else:
                await send_bytes(send, 200, orjson.dumps(_listed(record, scope)), JSON)
        except HTTPError as exc:
            await send_family_error(send, exc, fam)

    return serve


def _listed(record: dict[str, Any], scope: Scope) -> dict[str, Any]:
    """A stored response's input items as OpenAI lists them (``order``: ``desc`` by default,
    ``limit`` 1-100, default 20; ``after``: an item id)."""
    from urllib.parse import parse_qs

    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    order = (query.get("order") or ["desc"])[0]
    if order not in ("asc", "desc"):
        raise HTTPError(400, "order must be 'asc' or 'desc'", param="order")
    try:
        limit = int((query.get("limit") or ["20"])[0])
    except ValueError:
        raise HTTPError(400, "limit must be an integer", param="limit") from None
    if not 1 <= limit <= 100:
        raise HTTPError(400, "limit must be between 1 and 100", param="limit")
    items = list(record.get("input") or [])
    if order == "desc":
        items.reverse()
    after = (query.get("after") or [None])[0]
    if after is not None:
        ids = [i.get("id") for i in items if isinstance(i, dict)]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0].get("id") if page else None,
        "last_id": page[-1].get("id") if page else None,
        "has_more": len(items) > limit,
    }
