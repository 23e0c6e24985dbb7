"""Health endpoints: ``GET /health/liveness``, ``/health/readiness`` and ``/health/models``.

* liveness: the process answers (no key needed);
* readiness: 503 while draining (SIGTERM arrived) or while the shared state (``server.state``
  Redis) is unreachable, judged by :class:`StateProbe` (one PING a second at most);
* models: every gateway's breaker and limit state per deployment, from the gateways' memory
  or shared store: no model is called, no token spent (a key sees the gateways it may use).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from msgflux.server.asgi import Send, send_json
from msgflux.server.runtime import Runtime

__all__ = ["StateProbe", "liveness", "models_health", "readiness"]


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
                from msgflux.models.gateway.redis.cluster import Connector
                from msgflux.models.gateway.redis.url import parse_url

                self._client = Connector(parse_url(self.url), self.timeout)
            # On a Redis Cluster: the node serving the slot of the server's own keys.
            await asyncio.wait_for(self._client.apipe("{msgflux}").call("PING"), self.timeout)
            self._ok, self._error = True, None
        except Exception as exc:
            from msgflux._secrets import scrub

            self._ok, self._error = False, scrub(f"{type(exc).__name__}: {exc}")
        return self._ok, self._error

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


async def liveness(send: Send) -> None:
    await send_json(send, 200, {"status": "alive", "pid": os.getpid()})


async def readiness(send: Send, draining: bool, probe: StateProbe | None) -> None:
    if draining:
        await send_json(send, 503, {"status": "draining"})
        return
    if probe is not None:
        ok, error = await probe.reachable()
        if not ok:
            await send_json(send, 503, {"status": "state unreachable", "error": error})
            return
    await send_json(send, 200, {"status": "ready"})


def models_health(runtime: Runtime, names: list[str]) -> dict[str, Any]:
    """Breaker and limit state per deployment of the gateways ``names`` (see the module
    docstring)."""
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
