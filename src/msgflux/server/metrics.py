"""``GET /metrics``: the server's and its gateways' Prometheus metrics (``prometheus-client``).

Two families, all with labels from the config or from fixed sets, never from what a client
sends (a model name no gateway has is ``gateway="unknown"``, a request without a valid key is
``key="unauthenticated"``), so the number of series stays bounded:

* ``msgflux_server_*``, per request: ``requests_total{gateway,status,key}``,
  ``request_duration_seconds{gateway}`` (to the last byte), ``time_to_first_token_seconds
  {gateway}`` (streams: request arrival to the first body bytes), ``in_flight``,
  ``key_rejections_total{key,reason}``, ``key_cost_usd_total{key}``, ``state_healthy{store}``
  (the key limits' Redis answers; absent without ``server.state``), ``reloads_total{result}``;
* ``msgflux_gateway_*``, per gateway call, from :class:`msgflux.metrics.GatewayMetrics` (each
  gateway's ``on_complete`` hook): calls, attempts and fallbacks by deployment and outcome,
  call, attempt and time-to-first-chunk histograms, tokens and cost by deployment, and the
  gauges breaker state, in-flight attempts and state-store health.

With ``--workers N`` the supervisor gives every worker one ``PROMETHEUS_MULTIPROC_DIR``
(emptied at start; :func:`prepare_multiprocess`) and any worker answers a scrape for all of
them (prometheus-client's multiprocess mode); each worker refreshes its gauges every
:data:`REFRESH_EVERY` seconds, the one answering also right before it does.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any

from msgflux.metrics import LATENCY_BUCKETS, TTFT_BUCKETS, GatewayMetrics

if TYPE_CHECKING:
    from msgflux.server.exchange import Exchange

__all__ = [
    "CONTENT_TYPE",
    "MULTIPROC_ENV",
    "REFRESH_EVERY",
    "ServerMetrics",
    "cleanup_multiprocess",
    "prepare_multiprocess",
    "process_dead",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
REFRESH_EVERY = 5.0
UNKNOWN_GATEWAY = "unknown"
UNAUTHENTICATED = "unauthenticated"
_STATUS = {code: str(code) for code in range(100, 600)}


def prepare_multiprocess() -> tuple[str, bool]:
    """Set up ``PROMETHEUS_MULTIPROC_DIR`` for N workers: the user's (emptied of old files)
    or a new temporary directory. Returns (the directory, whether it was created here)."""
    path = os.environ.get(MULTIPROC_ENV)
    created = not path
    if not path:
        path = tempfile.mkdtemp(prefix="msgflux-metrics-")
    os.makedirs(path, exist_ok=True)
    for old in glob.glob(os.path.join(path, "*.db")):
        os.remove(old)
    os.environ[MULTIPROC_ENV] = path
    return path, created


def process_dead(pid: int) -> None:
    """A worker exited: drop its live gauges (in flight, breaker state) from the totals."""
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


def cleanup_multiprocess(path: str, created: bool) -> None:
    if created:
        shutil.rmtree(path, ignore_errors=True)


class ServerMetrics:
    """The metrics of one server process (see the module docstring)."""

    def __init__(self) -> None:
        import prometheus_client as prom
        from prometheus_client import values

        self._prom = prom
        self.multiprocess_dir = os.environ.get(MULTIPROC_ENV) or None
        if self.multiprocess_dir and not getattr(values.ValueClass, "_multiprocess", False):
            # prometheus-client picks its value class when first imported; a supervisor that
            # imported it before setting the directory must not leave its workers on memory.
            values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        registry = prom.CollectorRegistry(auto_describe=True)
        self.registry = registry
        self.gateway = GatewayMetrics(registry=registry)
        ns: dict[str, Any] = {"namespace": "msgflux", "subsystem": "server", "registry": registry}
        self.requests = prom.Counter(
            "requests", "Requests by gateway, HTTP status and client key name.",
            ["gateway", "status", "key"], **ns,
        )  # fmt: skip
        self.duration = prom.Histogram(
            "request_duration_seconds", "Request arrival to the last byte of the response.",
            ["gateway"], buckets=LATENCY_BUCKETS, **ns,
        )  # fmt: skip
        self.ttft = prom.Histogram(
            "time_to_first_token_seconds", "Streams: request arrival to the first body bytes.",
            ["gateway"], buckets=TTFT_BUCKETS, **ns,
        )  # fmt: skip
        self.in_flight = prom.Gauge(
            "in_flight", "Requests being served.", multiprocess_mode="livesum", **ns
        )
        self.rejections = prom.Counter(
            "key_rejections", "Requests refused by their key's limits, by reason.",
            ["key", "reason"], **ns,
        )  # fmt: skip
        self.key_cost = prom.Counter(
            "key_cost_usd", "Cost of the answers per client key (USD, known prices).",
            ["key"], **ns,
        )  # fmt: skip
        self.state_healthy = prom.Gauge(
            "state_healthy", "1 when the shared state (server.state) of the key limits answers.",
            ["store"], multiprocess_mode="livemin", **ns,
        )  # fmt: skip
        self.reloads = prom.Counter(
            "reloads", "Config reloads by result (ok, error).", ["result"], **ns
        )
        self._state_probe: Any = None
        self._children: dict[tuple[Any, ...], Any] = {}
        self.serving = 0
        """Requests being served now (``in_flight``, set from it when the gauges refresh: a
        plain count costs nothing per request, the gauge's lock does)."""

    def watch(self, runtime: Any, limiter: Any) -> None:
        """Report the gauges of ``runtime``'s gateways and of ``limiter``'s shared state."""
        for route in runtime.routes.values():
            self.gateway.watch(route.gateway)
        self._state_probe = limiter

    def refresh(self) -> None:
        """Set the gauges now (this process's)."""
        self.in_flight.set(self.serving)
        self.gateway.refresh()
        limiter = self._state_probe
        if limiter is not None and limiter.shared:
            self.state_healthy.labels("redis").set(1.0 if limiter.healthy() else 0.0)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered (the label sets are few: see the docstring)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, exchange: Exchange) -> None:
        """Count one finished request."""
        child = self._child
        route = exchange.route
        gateway = route.name if route is not None else UNKNOWN_GATEWAY
        principal = exchange.principal
        key = principal.name if principal is not None else UNAUTHENTICATED
        child(self.requests, gateway, _STATUS.get(exchange.status) or "499", key).inc()
        if route is None:
            return
        child(self.duration, gateway).observe(exchange.ended - exchange.started)
        if exchange.first_body is not None and exchange.streamed:
            child(self.ttft, gateway).observe(exchange.first_body - exchange.started)
        if exchange.rejected is not None:
            child(self.rejections, key, exchange.rejected).inc()
        record = exchange.record
        if record is not None and record.cost:
            child(self.key_cost, key).inc(record.cost)

    def render(self) -> bytes:
        """The exposition text (all workers' in multiprocess mode)."""
        self.refresh()
        prom = self._prom
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return prom.generate_latest(registry)  # type: ignore[no-any-return]
        return prom.generate_latest(self.registry)  # type: ignore[no-any-return]

    async def refresh_forever(self) -> None:
        """Refresh the gauges every :data:`REFRESH_EVERY` s (multiprocess mode: the worker
        answering a scrape cannot read the others' gateways)."""
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            await asyncio.to_thread(self.refresh)
