"""The operator's endpoints: ``POST /admin/reload``, ``GET /admin/config`` and ``GET /metrics``.

Who may call them: with ``server.keys`` configured, only a key marked ``admin: true`` (any
other key gets 403, no key 401); with no keys (the server then listens on loopback only, or
was started with ``--no-auth``), only clients connecting from a loopback address. Prometheus
sends the admin key as ``Authorization: Bearer`` (``authorization.credentials_file`` in a
scrape config).

* ``POST /admin/reload``: reload the config file (:mod:`.reload`); 200 with the gateways now
  served, or 400 with the config error (``param`` names where) and the old config kept.
* ``GET /admin/config``: the active config as ``msgflux config check`` prints it, every secret
  masked, with when it was loaded.
* ``GET /metrics``: the Prometheus text (:mod:`.metrics`); 404 when ``server.metrics: false``.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from msgflux.server.asgi import Scope, Send, send_bytes, send_json
from msgflux.server.config import ConfigError, is_loopback, plan
from msgflux.server.endpoints import authenticate
from msgflux.server.errors import HTTPError
from msgflux.server.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from msgflux.server.operations import Operations
    from msgflux.server.runtime import Runtime

__all__ = ["PATHS", "serve"]

PATHS = {"/admin/reload": "POST", "/admin/config": "GET", "/metrics": "GET"}


def authorize(runtime: Runtime, scope: Scope) -> None:
    """Raise 401/403 unless the caller may use the admin endpoints (module docstring)."""
    if runtime.keys.enabled:
        principal = authenticate(runtime, scope)
        if not principal.admin:
            raise HTTPError(
                403,
                f"{scope['path']} needs an admin key (`admin: true` in server.keys); the key "
                f"`{principal.name}` is not one",
                code="forbidden",
            )
        return
    client = scope.get("client")
    if not client or not is_loopback(str(client[0])):
        raise HTTPError(
            403,
            f"{scope['path']} answers only loopback clients when no server.keys are configured",
            code="forbidden",
        )


async def serve(ops: Operations, runtime: Runtime, path: str, scope: Scope, send: Send) -> None:
    method = PATHS[path]
    if scope["method"] != method:
        raise HTTPError(
            405, f"{scope['method']} is not allowed on {path}; use {method}",
            code="method_not_allowed",
        )  # fmt: skip
    authorize(runtime, scope)
    if path == "/metrics":
        metrics = ops.metrics
        if metrics is None:
            raise HTTPError(404, "metrics are off (server.metrics: false)", code="unknown_url")
        text = await asyncio.to_thread(metrics.render)
        await send_bytes(send, 200, text, CONTENT_TYPE)
    elif path == "/admin/config":
        shown = plan(runtime.config)
        listening = scope.get("server")
        if isinstance(listening, (tuple, list)) and len(listening) == 2:
            # Where this server listens (the command line's --host/--port win over the file).
            shown["server"]["host"], shown["server"]["port"] = listening[0], listening[1]
        await send_json(
            send,
            200,
            {"pid": os.getpid(), "loaded_at": runtime.loaded_at, "config": shown},
        )
    else:
        await _reload(ops, send)


async def _reload(ops: Operations, send: Send) -> None:
    assert ops.reloader is not None
    try:
        runtime, _ = await ops.reloader.reload("admin")
    except ConfigError as exc:
        ops.reloaded(False, exc)
        raise HTTPError(
            400, f"config error, previous config kept: {exc}", param=exc.path or None,
            code="invalid_config",
        ) from None  # fmt: skip
    ops.reloaded(True)
    await send_json(
        send,
        200,
        {
            "status": "reloaded",
            "pid": os.getpid(),
            "loaded_at": runtime.loaded_at,
            "gateways": list(runtime.routes),
        },
    )
