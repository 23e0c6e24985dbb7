"""The ASGI application: routing, the model list, health, and errors in OpenAI's shape.

Routes (each also without the ``/v1`` prefix)::

    POST /v1/chat/completions  /v1/embeddings  /v1/moderations  /v1/audio/speech
         /v1/audio/transcriptions (multipart)  /v1/images/generations
    GET  /v1/models  /v1/models/{id}
    GET  /health/liveness  /health/readiness  /health/models
    POST /admin/reload   GET /admin/config  /metrics  (operators: :mod:`.admin`)
    POST /v1/messages  /v1/messages/count_tokens  (Anthropic's API: :mod:`.anthropic_api`)

The app holds its :class:`~msgflux.server.runtime.Runtime` by reference (``app.runtime``):
each request reads it once, so swapping it (a reload) never mixes two configs in one request.
Key limits, metrics, the access log and reloads live in :class:`~.operations.Operations`.
``app.draining`` turns readiness to 503 (set when SIGTERM arrives).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from msgflux.server import admin, anthropic_api
from msgflux.server.asgi import Receive, Scope, Send, send_error, send_json
from msgflux.server.endpoints import ENDPOINTS, authenticate, handle
from msgflux.server.errors import HTTPError
from msgflux.server.operations import Operations
from msgflux.server.runtime import Runtime

__all__ = ["App", "StateProbe"]

logger = logging.getLogger("msgflux.server")


class StateProbe:
    """Is the shared state (Redis) reachable? One PING at most per second, bounded in time."""

    def __init__(self, url: str, *, timeout: float = 0.5, every: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        self.every = every
        self._checked = float("-inf")
        self._ok = False
        self._error: str | None = None
        self._client: Any = None

    async def reachable(self) -> tuple[bool, str | None]:
        now = time.monotonic()
        if now - self._checked < self.every:
            return self._ok, self._error
        self._checked = now
        try:
            if self._client is None:
                import redis.asyncio as aioredis

                self._client = aioredis.Redis.from_url(
                    self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
                )
            await asyncio.wait_for(self._client.ping(), self.timeout)
            self._ok, self._error = True, None
        except Exception as exc:
            from msgflux._secrets import scrub

            self._ok, self._error = False, scrub(f"{type(exc).__name__}: {exc}")
        return self._ok, self._error

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


class App:
    """The server's ASGI callable (see the module docstring)."""

    def __init__(self, runtime: Runtime, ops: Operations | None = None) -> None:
        """``ops``: built before ``runtime`` (whose gateways got its hooks); default: new."""
        self.runtime = runtime
        self.draining = False
        state = runtime.config.server.state
        self.state_probe = StateProbe(state) if state else None
        self.ops = ops or Operations(runtime.config)
        self.ops.attach(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        short = path[3:] if path.startswith("/v1/") else path
        method: str = scope["method"]
        ops = self.ops
        exchange, token = ops.begin(scope)
        if ops.observing:
            send = exchange.wrap(send)
        reloader = ops.reloader
        assert reloader is not None
        runtime = reloader.acquire()
        try:
            endpoint = ENDPOINTS.get(short)
            if endpoint is not None:
                _method(method, "POST", path)
                await handle(runtime, endpoint, scope, receive, send)
                return
            if short in anthropic_api.PATHS:
                await anthropic_api.serve(runtime, short, method, scope, receive, send)
                return
            if short == "/models" or short.startswith("/models/"):
                _method(method, "GET", path)
                await self._models(runtime, scope, send, short[len("/models/") :] or None)
            elif path.startswith("/health/"):
                _method(method, "GET", path)
                await self._health(runtime, scope, send, path[len("/health/") :])
            elif path in admin.PATHS:
                await admin.serve(ops, runtime, path, scope, send)
            else:
                raise HTTPError(404, f"unknown path {path}", code="unknown_url")
        except HTTPError as exc:
            await send_error(send, exc)
        except Exception:
            # A bug of ours: answer in the documented shape, log it (never a key: scrubbed).
            logger.exception("unexpected error serving %s %s", method, path)
            await send_error(send, HTTPError(500, "internal server error", type="server_error"))
        finally:
            reloader.release(runtime)
            ops.finish(exchange, token)

    async def _models(
        self, runtime: Runtime, scope: Scope, send: Send, model_id: str | None
    ) -> None:
        principal = authenticate(runtime, scope)

        def card(name: str) -> dict[str, Any]:
            route = runtime.routes[name]
            return {
                "id": name,
                "object": "model",
                "created": runtime.loaded_at,
                "owned_by": "msgflux",
                "type": route.type,
            }

        if model_id is None:
            data = [card(n) for n in runtime.routes if principal.allows(n)]
            await send_json(send, 200, {"object": "list", "data": data})
            return
        if model_id not in runtime.routes:
            names = [n for n in runtime.routes if principal.allows(n)]
            raise HTTPError(
                404,
                f"The model `{model_id}` does not exist. Configured models: "
                f"{', '.join(names) or 'none'}",
                param="model",
                code="model_not_found",
            )
        if not principal.allows(model_id):
            raise HTTPError(
                403, f"this API key may not use the model `{model_id}`", code="forbidden"
            )
        await send_json(send, 200, card(model_id))

    async def _health(self, runtime: Runtime, scope: Scope, send: Send, what: str) -> None:
        if what == "liveness":
            await send_json(send, 200, {"status": "alive", "pid": os.getpid()})
        elif what == "readiness":
            await self._readiness(send)
        elif what == "models":
            principal = authenticate(runtime, scope)
            names = [n for n in runtime.routes if principal.allows(n)]
            report = await asyncio.to_thread(_models_health, runtime, names)
            await send_json(send, 200, report)
        else:
            raise HTTPError(404, f"unknown path /health/{what}", code="unknown_url")

    async def _readiness(self, send: Send) -> None:
        if self.draining:
            await send_json(send, 503, {"status": "draining"})
            return
        if self.state_probe is not None:
            ok, error = await self.state_probe.reachable()
            if not ok:
                await send_json(send, 503, {"status": "state unreachable", "error": error})
                return
        await send_json(send, 200, {"status": "ready"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.ops.started()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        from msgflux import _transport

        await self.ops.aclose()
        self.runtime.close()
        if self.state_probe is not None:
            await self.state_probe.aclose()
        await _transport.aclose()


def _method(method: str, allowed: str, path: str) -> None:
    if method != allowed:
        raise HTTPError(
            405, f"{method} is not allowed on {path}; use {allowed}", code="method_not_allowed"
        )


def _models_health(runtime: Runtime, names: list[str]) -> dict[str, Any]:
    """Breaker and limit state per deployment, from the gateways' memory (or shared store):
    no model is called, no token spent."""
    gateways: dict[str, Any] = {}
    statuses = []
    for name in names:
        gateway = runtime.routes[name].gateway
        health = gateway.health()
        stats = gateway.stats()["deployments"]
        deployments = {}
        for dep, entry in health["deployments"].items():
            st = stats.get(dep, {})
            deployments[dep] = {
                **entry,
                "in_flight": st.get("in_flight"),
                "limits": st.get("limits"),
                **{k: st[k] for k in ("rpm_used", "tpm_used", "leases") if k in st},
            }
        statuses.append(health["status"])
        gateways[name] = {"status": health["status"], "deployments": deployments}
    if statuses and all(s == "down" for s in statuses):
        overall = "down"
    elif all(s == "healthy" for s in statuses):
        overall = "healthy"
    else:
        overall = "degraded"
    return {"status": overall, "gateways": gateways}
