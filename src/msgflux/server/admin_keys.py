"""The virtual keys API, for admin keys only (:func:`.admin.authorize`):

* ``POST /admin/keys``: create (``name``, ``models``, and any of ``rpm``, ``tpm``,
  ``max_concurrency``, ``budget``, ``expires_at``, ``metadata``); 201 with the secret, the only
  time it is shown;
* ``GET /admin/keys``: every key, the config file's (read-only) and the virtual ones, with their
  use against their limits; ``GET /admin/keys/{name}``: one;
* ``PATCH /admin/keys/{name}``: change any of the fields above (``null`` clears one);
* ``POST /admin/keys/{name}/rotate``: a new secret (``grace_seconds``, default 3600, is how long
  the old one keeps working); ``POST /admin/keys/{name}/revoke``: refused from now on, on every
  worker and instance within a second;
* ``GET /admin/audit?limit=100``: the audit record, newest first.

Answers that hold a secret carry ``Cache-Control: no-store``. Each answer says where the keys
live: Redis (``server.state``), or this process's memory (lost at restart, seen by no other
process; with several workers and no ``server.state`` creating keys is refused).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from msgflux._secrets import scrub
from msgflux.server import admin
from msgflux.server.asgi import Receive, Scope, Send, read_body, send_json
from msgflux.server.config import KeySpec
from msgflux.server.endpoints import authenticate
from msgflux.server.errors import HTTPError
from msgflux.server.key_limits import KeyLimits
from msgflux.server.limits import usage_of
from msgflux.server.runtime import Runtime
from msgflux.server.vkeys import KeyChangeError, VirtualKey

if TYPE_CHECKING:
    from msgflux.server.app import App

__all__ = ["AUDIT", "KEYS", "MAX_BODY", "audit", "route", "storage"]

KEYS = "/admin/keys"
AUDIT = "/admin/audit"
MAX_BODY = 64 * 1024
_NO_STORE = [(b"cache-control", b"no-store")]

Handler = Callable[["App", Runtime, Scope, Receive, Send], Awaitable[None]]


def storage(app: App) -> dict[str, Any]:
    """Where the keys live, said in every answer."""
    if app.ops.directory.store.shared:
        return {"backend": "redis", "durable": True, "shared": True}
    return {
        "backend": "memory",
        "durable": False,
        "shared": False,
        "note": "virtual keys live in this process's memory: they do not survive a restart and "
        "no other worker or instance sees them. Set server.state to a Redis URL to keep and "
        "share them.",
    }


def _actor(runtime: Runtime, scope: Scope) -> str:
    """Who makes the change: the admin key's name (``loopback`` when the server has none)."""
    if runtime.keys.enabled:
        return authenticate(runtime, scope).name
    return "loopback"


def _config_keys(runtime: Runtime) -> dict[str, KeySpec]:
    return {k.name: k for k in runtime.config.server.keys}


def _config_public(key: KeySpec) -> dict[str, Any]:
    limits = key.limits
    budget = limits.budget
    return {
        "name": key.name,
        "source": "config",
        "read_only": True,
        "status": "active",
        "admin": key.admin,
        "models": "*" if key.models is None else sorted(key.models),
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "max_concurrency": limits.max_concurrency,
        "budget": None if budget is None else {"usd": budget.usd, "period": budget.period},
    }


async def _with_usage(app: App, entry: dict[str, Any], limits: KeyLimits) -> dict[str, Any]:
    """``entry`` with the key's use against its limits (a key without any has nothing
    counted: no read)."""
    if not limits.active:
        entry["usage"] = usage_of(limits, None, None, None, None)
        return entry
    try:
        entry["usage"] = await app.ops.limiter.usage(entry["name"], limits)
    except Exception:  # the listing is still useful without the counters
        entry["usage"] = None
    return entry


async def _body(scope: Scope, receive: Receive, required: bool = True) -> dict[str, Any]:
    raw = await read_body(scope, receive, MAX_BODY)
    if not raw.strip() and not required:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPError(400, f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise HTTPError(400, "the body must be a JSON object", code="invalid_json")
    return body


def _changing(app: App, runtime: Runtime) -> None:
    """Refuse changes a client could not rely on (module docstring)."""
    if not runtime.keys.enabled:
        raise HTTPError(
            409,
            "virtual keys need client authentication: add at least one (admin) key to "
            "server.keys, so the server checks keys at all",
            code="conflict",
            type="invalid_request_error",
        )
    if not app.ops.directory.store.shared and app.ops.workers > 1:
        raise HTTPError(
            409,
            f"{app.ops.workers} workers and no server.state: a key created in one worker's "
            "memory would be unknown to the others. Set server.state to a Redis URL.",
            code="conflict",
            type="invalid_request_error",
        )


async def _guarded(work: Awaitable[Any]) -> Any:
    """Run a key operation: its mistakes as 4xx naming the field, store trouble as 503."""
    try:
        return await work
    except KeyChangeError as exc:
        raise HTTPError(
            exc.status,
            exc.message,
            param=exc.field,
            code=exc.code,
            type="invalid_request_error" if exc.status < 500 else None,
        ) from None
    except HTTPError:
        raise
    except Exception as exc:
        raise HTTPError(
            503,
            f"the key store cannot be reached: {scrub(f'{type(exc).__name__}: {exc}')}",
            code="store_unavailable",
        ) from None


# -- the handlers --------------------------------------------------------------------------------
async def _list(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    records: list[VirtualKey] = await _guarded(app.ops.key_admin.records())
    now = app.ops.directory.clock.time()
    config = _config_keys(runtime)
    entries = [_with_usage(app, _config_public(k), k.limits) for k in config.values()]
    entries += [_with_usage(app, r.public(now), r.limits) for r in records if r.name not in config]
    keys = await asyncio.gather(*entries)
    await send_json(send, 200, {"storage": storage(app), "keys": keys})


async def _create(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    _changing(app, runtime)
    body = await _body(scope, receive)
    record, secret = await _guarded(
        app.ops.key_admin.create(
            _actor(runtime, scope), body, list(runtime.routes), _config_keys(runtime)
        )
    )
    now = app.ops.directory.clock.time()
    out = {"key": record.public(now), "secret": secret, "storage": storage(app)}
    await send_json(send, 201, out, _NO_STORE)


def _item(name: str, action: str | None, method: str, path: str) -> Handler:
    expected = "GET or PATCH" if action is None else "POST"
    allowed = ("GET", "PATCH") if action is None else ("POST",)
    if method not in allowed:
        raise HTTPError(
            405, f"{method} is not allowed on {path}; use {expected}", code="method_not_allowed"
        )

    async def serve(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        admin.authorize(runtime, scope)
        ops = app.ops
        config = _config_keys(runtime)
        now = ops.directory.clock.time()
        if method == "GET":
            if name in config:
                entry = _config_public(config[name])
                await send_json(send, 200, await _with_usage(app, entry, config[name].limits))
                return
            record = await _guarded(ops.key_admin.get(name))
            await send_json(send, 200, await _with_usage(app, record.public(now), record.limits))
            return
        _changing(app, runtime)
        actor = _actor(runtime, scope)
        if method == "PATCH":
            body = await _body(scope, receive)
            record = await _guarded(
                ops.key_admin.update(actor, name, body, list(runtime.routes), config)
            )
            await send_json(send, 200, record.public(ops.directory.clock.time()))
        elif action == "rotate":
            body = await _body(scope, receive, required=False)
            record, secret, grace = await _guarded(ops.key_admin.rotate(actor, name, body, config))
            now = ops.directory.clock.time()
            out = {
                "key": record.public(now),
                "secret": secret,
                "previous_valid_until": now + grace,
                "storage": storage(app),
            }
            await send_json(send, 200, out, _NO_STORE)
        else:
            record = await _guarded(ops.key_admin.revoke(actor, name, config))
            await send_json(send, 200, record.public(ops.directory.clock.time()))

    return serve


def route(short: str, method: str) -> Handler:
    """The handler of ``method`` on ``/admin/keys`` or ``/admin/keys/...`` (404/405 first)."""
    if short == KEYS:
        if method == "GET":
            return _authorized(_list)
        if method == "POST":
            return _authorized(_create)
        raise HTTPError(
            405, f"{method} is not allowed on {short}; use GET or POST", code="method_not_allowed"
        )
    parts = short[len(KEYS) + 1 :].split("/")
    if len(parts) == 1 and parts[0]:
        return _item(parts[0], None, method, short)
    if len(parts) == 2 and parts[0] and parts[1] in ("rotate", "revoke"):
        return _item(parts[0], parts[1], method, short)
    raise HTTPError(404, f"unknown path {short}", code="unknown_url")


def _authorized(handler: Handler) -> Handler:
    async def serve(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        admin.authorize(runtime, scope)
        await handler(app, runtime, scope, receive, send)

    return serve


async def audit(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /admin/audit?limit=N`` (1-1000, default 100): newest first."""
    admin.authorize(runtime, scope)
    limit = 100
    for part in scope.get("query_string", b"").decode("latin-1").split("&"):
        name, _, value = part.partition("=")
        if name == "limit":
            if not value.isdigit() or not 1 <= int(value) <= 1000:
                raise HTTPError(400, "limit must be an integer from 1 to 1000", param="limit")
            limit = int(value)
    entries = await _guarded(app.ops.key_admin.audit(limit))
    await send_json(send, 200, {"storage": storage(app), "entries": entries})
