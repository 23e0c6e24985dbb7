"""The handler table: every path the server answers, its method, and who answers it.

Each API path maps to its family's endpoint (:mod:`.openai_api`, :mod:`.anthropic_api`) through
the one model-request path (:func:`.endpoints.handle`); operators' and health paths to theirs.
API paths are served with and without the ``/v1`` prefix. :func:`resolve` is the only place a
path is matched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from msgflux.server import (
    admin,
    admin_keys,
    anthropic_api,
    dashboard,
    health,
    openai_api,
    responses_api,
    ui,
)
from msgflux.server.asgi import Receive, Scope, Send, send_json
from msgflux.server.endpoints import Endpoint, authenticate, handle
from msgflux.server.errors import HTTPError
from msgflux.server.runtime import Runtime

if TYPE_CHECKING:
    from msgflux.server.app import App

__all__ = ["ROUTES", "Handler", "resolve"]

Handler = Callable[["App", Runtime, Scope, Receive, Send], Awaitable[None]]
"""Answers one request (the app for its operations and state, the request's runtime)."""


def _model(ep: Endpoint) -> Handler:
    async def serve(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        await handle(runtime, ep, scope, receive, send)

    return serve


async def _count_tokens(
    app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send
) -> None:
    await anthropic_api.count_tokens(runtime, scope, receive, send)


async def _models(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await openai_api.models(runtime, scope, send, None)


async def _liveness(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await health.liveness(send)


async def _readiness(
    app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send
) -> None:
    await health.readiness(send, app.draining, app.state_probe)


async def _models_health(
    app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send
) -> None:
    principal = authenticate(runtime, scope)
    names = [n for n in runtime.routes if principal.allows(n)]
    await send_json(send, 200, await asyncio.to_thread(health.models_health, runtime, names))


def _admin(path: str) -> Handler:
    async def serve(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        await admin.serve(app.ops, runtime, path, scope, send)

    return serve


ROUTES: dict[str, tuple[str, Handler]] = {
    **{ep.path: ("POST", _model(ep)) for ep in openai_api.ENDPOINTS},
    **{ep.path: ("POST", _model(ep)) for ep in anthropic_api.ENDPOINTS},
    anthropic_api.COUNT_TOKENS: ("POST", _count_tokens),
    responses_api.ENDPOINT.path: ("POST", responses_api.create),
    "/models": ("GET", _models),
    "/health/liveness": ("GET", _liveness),
    "/health/readiness": ("GET", _readiness),
    "/health/models": ("GET", _models_health),
    **{path: (method, _admin(path)) for path, method in admin.PATHS.items()},
    admin_keys.AUDIT: ("GET", admin_keys.audit),
    dashboard.PATH: ("GET", dashboard.serve),
    **{path: ("GET", ui.serve) for path in ui.PATHS},
}
"""Path (without ``/v1``) -> (method, handler)."""


def resolve(path: str, method: str) -> Handler:
    """The handler of ``method path`` (404 for an unknown path, 405 for a wrong method)."""
    short = path[3:] if path.startswith("/v1/") else path
    entry = ROUTES.get(short)
    if entry is None:
        if short.startswith("/models/"):
            return _model_card(short[len("/models/") :], method, path)
        if short == admin_keys.KEYS or short.startswith(admin_keys.KEYS + "/"):
            return admin_keys.route(short, method)
        if short.startswith(responses_api.PREFIX):
            handler: Handler = responses_api.item_route(short[len(responses_api.PREFIX) :], method)
            return handler
        raise HTTPError(404, f"unknown path {path}", code="unknown_url")
    allowed, handler = entry
    if method != allowed:
        raise HTTPError(
            405, f"{method} is not allowed on {path}; use {allowed}", code="method_not_allowed"
        )
    return handler


def _model_card(model_id: str, method: str, path: str) -> Handler:
    if method != "GET":
        raise HTTPError(
            405, f"{method} is not allowed on {path}; use GET", code="method_not_allowed"
        )

    async def serve(app: Any, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        await openai_api.models(runtime, scope, send, model_id)

    return serve
