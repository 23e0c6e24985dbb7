"""The ASGI application: one request's lifecycle around the handler table.

Routes (each API path also without the ``/v1`` prefix): see :mod:`.routes`. OpenAI's API
(:mod:`.openai_api`), Anthropic's Messages API (:mod:`.anthropic_api`), health
(:mod:`.health`) and the operators' endpoints (:mod:`.admin`).

The app holds its :class:`~msgflux.server.runtime.Runtime` by reference (``app.runtime``):
each request reads it once, so swapping it (a reload) never mixes two configs in one request.
Key limits, metrics, the access log and reloads live in :class:`~.operations.Operations`.
``app.draining`` turns readiness to 503 (set when SIGTERM arrives).
"""

from __future__ import annotations

import logging

from msgflux.server.asgi import Receive, Scope, Send, send_error
from msgflux.server.errors import HTTPError
from msgflux.server.health import StateProbe
from msgflux.server.operations import Operations
from msgflux.server.routes import resolve
from msgflux.server.runtime import Runtime

__all__ = ["App"]

logger = logging.getLogger("msgflux.server")


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
        method: str = scope["method"]
        ops = self.ops
        exchange, token = ops.begin(scope)
        if ops.observing:
            send = exchange.wrap(send)
        reloader = ops.reloader
        assert reloader is not None
        runtime = reloader.acquire()
        try:
            keys = runtime.keys
            if keys.unknown(scope["headers"]):  # maybe a virtual key created elsewhere just now
                await keys.refresh()
            await resolve(path, method)(self, runtime, scope, receive, send)
        except HTTPError as exc:
            await send_error(send, exc)
        except Exception:
            # A bug of ours: answer in the documented shape, log it (never a key: scrubbed).
            logger.exception("unexpected error serving %s %s", method, path)
            await send_error(send, HTTPError(500, "internal server error", type="server_error"))
        finally:
            reloader.release(runtime)
            ops.finish(exchange, token)

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
