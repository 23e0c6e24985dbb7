"""``GET /admin/dashboard``: what the dashboard (``/ui``) shows, as one JSON document.

Per gateway and deployment: status and breaker state (from the state store, so shared with
``server.state``), when an open breaker probes again, requests in flight, p50/p95 latency,
error rate (over the breaker's window when it has one, else since this process started),
whether a time window (``time_constraints``) keeps the deployment out now, and its last
error's type. Then the activity of the last hour (:mod:`.activity`): requests, errors and spend
per minute per gateway and per key, and the last requests whose attempts failed, each attempt's
error type and duration. No content and no error message: an upstream's may quote a prompt.

Latency, in-flight and error counts are this process's (``pid`` says which); breaker state and,
with ``server.state``, the activity are every process's.
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from msgflux.models.gateway.schedule import in_blackout, parse_timezone, parse_windows
from msgflux.server import admin
from msgflux.server.asgi import Receive, Scope, Send, send_json
from msgflux.server.config import GatewaySpec
from msgflux.server.runtime import Runtime

if TYPE_CHECKING:
    from msgflux.server.app import App

__all__ = ["PATH", "REFRESH", "gateways", "serve"]

PATH = "/admin/dashboard"
REFRESH = 3.0
"""Seconds between two reads of the dashboard."""


def _window(spec: GatewaySpec, keys: Any, now: datetime) -> str | None:
    """``open`` or ``blackout`` for a deployment with time windows; None without."""
    constraints = keys.get("time_constraints")
    if not constraints:
        return None
    try:
        windows = parse_windows(constraints, "")
        tz = parse_timezone(keys.get("timezone") or spec.options.get("timezone"))
    except (TypeError, ValueError):
        return None
    return "blackout" if in_blackout(windows, now, tz) else "open"


def _ms(value: Any) -> float | None:
    return None if value is None else round(float(value) * 1000, 1)


def _error_rate(st: dict[str, Any]) -> float | None:
    calls, failures = st.get("window_calls"), st.get("window_failures")
    if not calls:
        calls, failures = st.get("calls"), st.get("failed")
    if not calls:
        return None
    return round(float(failures or 0) / float(calls), 4)


def gateways(runtime: Runtime, now: datetime) -> dict[str, Any]:
    """Every gateway's deployments (see the module docstring). Reads the state store."""
    out: dict[str, Any] = {}
    for name, route in runtime.routes.items():
        spec = runtime.config.gateways[name]
        health = route.gateway.health()
        stats = route.gateway.stats()["deployments"]
        deployments = []
        for dep in spec.deployments:
            st = stats.get(dep.model_name, {})
            entry = health["deployments"].get(dep.model_name, {})
            last = st.get("last_error")
            deployments.append(
                {
                    "name": dep.model_name,
                    "model": dep.model,
                    "status": entry.get("status"),
                    "breaker": st.get("breaker"),
                    "reopens_at": st.get("reopens_at"),
                    "in_flight": st.get("in_flight"),
                    "calls": st.get("calls"),
                    "failed": st.get("failed"),
                    "error_rate": _error_rate(st),
                    "p50_ms": _ms((st.get("latency") or {}).get("p50")),
                    "p95_ms": _ms((st.get("latency") or {}).get("p95")),
                    "window": _window(spec, dep.keys, now),
                    "last_error": None if not last else {"type": last["type"], "at": last["at"]},
                    "limits": st.get("limits"),
                    **{k: st[k] for k in ("rpm_used", "tpm_used", "leases") if k in st},
                }
            )
        out[name] = {"type": route.type, "status": health["status"], "deployments": deployments}
    return out


async def serve(app: App, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    admin.authorize(runtime, scope)
    clock = app.ops.directory.clock
    now = clock.now().astimezone(timezone.utc)
    data = await asyncio.to_thread(gateways, runtime, now)
    activity = await app.ops.activity.read()
    await send_json(
        send,
        200,
        {
            "at": clock.time(),
            "pid": os.getpid(),
            "workers": app.ops.workers,
            "refresh": REFRESH,
            "gateways": data,
            "activity": activity,
        },
    )
