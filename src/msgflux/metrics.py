"""Prometheus metrics for gateway calls (the ``[metrics]`` extra: ``prometheus-client``).

>>> from prometheus_client import CollectorRegistry
>>> metrics = GatewayMetrics(registry=CollectorRegistry())
>>> gateway = ModelGateway(models, name="chat", on_complete=metrics.observe)  # doctest: +SKIP
>>> metrics.watch(gateway)  # doctest: +SKIP

:meth:`GatewayMetrics.observe` takes each call's
:class:`~msgflux.models.gateway.record.CallRecord` (counters and histograms, a few
microseconds a call; the response cache's hits, misses, bypasses and cost saved among them);
:meth:`~GatewayMetrics.watch` adds what is read from a gateway (breaker state, in flight,
shared-state health, the bytes its cache read, wrote and holds), refreshed when the registry
is scraped (and by :meth:`~GatewayMetrics.refresh`).

Labels take only configured names (the gateway's ``name=``, deployment ``model_name``,
provider) and fixed sets (outcome, error type), never a value a client sends, so the number
of series stays bounded; every label value goes through the secret scrubber. Only plain
counters, histograms and gauges with a ``multiprocess_mode`` are used, so the same metrics
work in prometheus-client's multiprocess mode (where a scraping process does not run this
module's refresh: call :meth:`~GatewayMetrics.refresh` from each worker instead).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

from msgflux import exceptions
from msgflux._secrets import scrub
from msgflux.models.gateway.record import CallRecord

__all__ = ["ERROR_TYPES", "GatewayMetrics"]

ERROR_TYPES = frozenset(
    name
    for name in exceptions.__all__
    if isinstance(getattr(exceptions, name), type)
    and issubclass(getattr(exceptions, name), BaseException)
)
"""Error type label values: msgflux's exception names; anything else is ``"other"``."""

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
BREAKER_STATES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
"""``breaker_state`` gauge values (-1: disabled or unknown)."""


def _error_label(name: str | None) -> str:
    if name is None:
        return "none"
    return name if name in ERROR_TYPES else "other"


def _attempt_outcome(attempt: Any) -> str:
    if attempt.skipped is not None:
        return "skipped"
    if attempt.cancelled:
        return "cancelled"
    return "success" if attempt.exception is None else "error"


class GatewayMetrics:
    """The gateway's Prometheus metrics, registered in ``registry`` (default: the global
    ``prometheus_client.REGISTRY``) under ``namespace``."""

    def __init__(self, registry: Any = None, namespace: str = "msgflux") -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise ImportError(
                'GatewayMetrics needs prometheus-client: install "msgflux[metrics]"'
            ) from exc
        if not isinstance(namespace, str) or not namespace.replace("_", "").isalnum():
            raise ValueError(
                f"namespace must be a non-empty str of letters, digits and _, got {namespace!r}"
            )
        if registry is None:
            registry = prom.REGISTRY
        if not callable(getattr(registry, "register", None)):
            raise TypeError(
                f"registry must be a prometheus_client CollectorRegistry, got {registry!r}"
            )
        self.registry = registry
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        self._cache_bytes: weakref.WeakKeyDictionary[Any, tuple[int, int]] = (
            weakref.WeakKeyDictionary()
        )
        """Each watched gateway's cache bytes read and written when last refreshed."""
        registry.register(_Refresher(self))  # first, so gauges are fresh when collected
        ns = {"namespace": namespace, "subsystem": "gateway", "registry": registry}
        self.calls = prom.Counter(
            "calls", "Gateway calls by outcome and error type.",
            ["gateway", "outcome", "error"], **ns,
        )  # fmt: skip
        self.attempts = prom.Counter(
            "attempts", "Attempts (and skips) per deployment by outcome and error type.",
            ["gateway", "deployment", "provider", "outcome", "error"], **ns,
        )  # fmt: skip
        self.fallbacks = prom.Counter(
            "fallbacks", "Calls that moved on from a deployment, by the call's outcome.",
            ["gateway", "deployment", "outcome"], **ns,
        )  # fmt: skip
        self.duration = prom.Histogram(
            "call_duration_seconds", "Call latency (a stream: to its end), by deployment.",
            ["gateway", "deployment", "outcome"], buckets=LATENCY_BUCKETS, **ns,
        )  # fmt: skip
        self.attempt_duration = prom.Histogram(
            "attempt_duration_seconds", "Latency of each attempt that was made.",
            ["gateway", "deployment", "outcome"], buckets=LATENCY_BUCKETS, **ns,
        )  # fmt: skip
        self.ttft = prom.Histogram(
            "time_to_first_chunk_seconds", "Streams: call start to first content.",
            ["gateway", "deployment"], buckets=TTFT_BUCKETS, **ns,
        )  # fmt: skip
        self.tokens = prom.Counter(
            "tokens", "Tokens of the answers, by type (input, output, cached_input).",
            ["gateway", "deployment", "type"], **ns,
        )  # fmt: skip
        self.cost = prom.Counter(
            "cost_usd", "Cost of the answers in USD (answers with a known price).",
            ["gateway", "deployment"], **ns,
        )  # fmt: skip
        self.breaker_state = prom.Gauge(
            "breaker_state", "Circuit breaker: 0 closed, 1 half open, 2 open, -1 none.",
            ["gateway", "deployment"], multiprocess_mode="livemax", **ns,
        )  # fmt: skip
        self.in_flight = prom.Gauge(
            "in_flight", "Attempts in flight (streams until they end).",
            ["gateway", "deployment"], multiprocess_mode="livesum", **ns,
        )  # fmt: skip
        self.state_healthy = prom.Gauge(
            "state_healthy", "1 when the gateway's state store answers, else 0.",
            ["gateway"], multiprocess_mode="livemin", **ns,
        )  # fmt: skip
        self.cache_hits = prom.Counter(
            "cache_hits", "Calls answered by the response cache (no attempt, cost 0).",
            ["gateway"], **ns,
        )  # fmt: skip
        self.cache_misses = prom.Counter(
            "cache_misses", "Calls the response cache could not answer (then kept).",
            ["gateway"], **ns,
        )  # fmt: skip
        self.cache_bypasses = prom.Counter(
            "cache_bypasses", "Calls that bypassed the response cache (sampled, n > 1, "
            "no-cache, cache=False).", ["gateway"], **ns,
        )  # fmt: skip
        self.cache_saved = prom.Counter(
            "cache_saved_usd", "What the cache hits would have cost (USD, known prices).",
            ["gateway"], **ns,
        )  # fmt: skip
        self.cache_read_bytes = prom.Counter(
            "cache_read_bytes", "Bytes of cache entries that answered calls.", ["gateway"], **ns
        )
        self.cache_written_bytes = prom.Counter(
            "cache_written_bytes", "Bytes of cache entries stored.", ["gateway"], **ns
        )
        self.cache_stored_bytes = prom.Gauge(
            "cache_stored_bytes", "Bytes a memory response cache holds.",
            ["gateway"], multiprocess_mode="livesum", **ns,
        )  # fmt: skip

    def _label(self, value: str | None) -> str:
        """A label value: configured text, scrubbed once and remembered."""
        if value is None:
            return ""
        label = self._labels.get(value)
        if label is None:
            with self._lock:
                label = self._labels[value] = scrub(value)
        return label

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, remembered (label sets are bounded, and looking a
        child up here is several times cheaper than prometheus-client's ``labels``)."""
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def observe(self, record: CallRecord) -> None:
        """Count one call (usable as ``on_complete=metrics.observe``)."""
        if not isinstance(record, CallRecord):
            raise TypeError(f"observe takes a CallRecord, got {type(record).__name__}")
        label = self._label
        child = self._child
        gateway = label(record.gateway)
        outcome = record.outcome
        deployment = label(record.deployment)
        child(self.calls, gateway, outcome, _error_label(record.error)).inc()
        child(self.duration, gateway, deployment, outcome).observe(record.duration)
        if record.ttft is not None:
            child(self.ttft, gateway, deployment).observe(record.ttft)
        moved: set[str] = set()
        for a in record.attempts:
            name = label(a.model_name)
            result = _attempt_outcome(a)
            error = _error_label(type(a.exception).__name__ if a.exception is not None else None)
            child(self.attempts, gateway, name, label(a.provider), result, error).inc()
            if a.skipped is None:
                child(self.attempt_duration, gateway, name, result).observe(a.duration)
            if a.model_name != record.deployment and not a.cancelled:
                moved.add(name)
        if record.deployment is None and record.attempts:
            moved.discard(label(record.attempts[-1].model_name))
        for name in moved:
            child(self.fallbacks, gateway, name, outcome).inc()
        if record.input_tokens is not None:
            tokens = self.tokens
            child(tokens, gateway, deployment, "input").inc(record.input_tokens)
            child(tokens, gateway, deployment, "output").inc(record.output_tokens or 0)
            child(tokens, gateway, deployment, "cached_input").inc(record.cached_input_tokens or 0)
        if record.cost is not None:
            child(self.cost, gateway, deployment).inc(record.cost)
        cache = record.cache
        if cache is not None:
            if cache == "hit":
                child(self.cache_hits, gateway).inc()
                if record.cost_saved:
                    child(self.cache_saved, gateway).inc(record.cost_saved)
            elif cache == "miss":
                child(self.cache_misses, gateway).inc()
            else:
                child(self.cache_bypasses, gateway).inc()

    def watch(self, gateway: Any) -> None:
        """Report ``gateway``'s breaker states, in-flight counts and state-store health (read
        when the registry is collected; the gateway is held weakly)."""
        if not callable(getattr(gateway, "stats", None)):
            raise TypeError(f"watch takes a ModelGateway, got {type(gateway).__name__}")
        self._watched.add(gateway)
        self.refresh()

    def refresh(self) -> None:
        """Set the gauges from every watched gateway's ``stats()`` now."""
        for gateway in list(self._watched):
            stats = gateway.stats()
            name = self._label(getattr(gateway, "name", None))
            self.state_healthy.labels(name).set(1.0 if stats["state"].get("healthy", True) else 0.0)
            for dep, entry in stats["deployments"].items():
                label = self._label(dep)
                state = BREAKER_STATES.get(entry.get("breaker"), -1.0)
                self.breaker_state.labels(name, label).set(state)
                self.in_flight.labels(name, label).set(entry["in_flight"])
            cache = stats.get("cache")
            if cache is not None:
                self._cache_refresh(gateway, name, cache)

    def _cache_refresh(self, gateway: Any, name: str, cache: dict[str, Any]) -> None:
        """The cache's byte counters, by what they grew since the last refresh."""
        now_read, now_written = cache["bytes_read"], cache["bytes_written"]
        with self._lock:  # two refreshes at once (a scrape, the timer) count a delta once
            read, written = self._cache_bytes.get(gateway, (0, 0))
            self._cache_bytes[gateway] = (now_read, now_written)
        if now_read > read:
            self.cache_read_bytes.labels(name).inc(now_read - read)
        if now_written > written:
            self.cache_written_bytes.labels(name).inc(now_written - written)
        if isinstance(cache.get("bytes"), int):
            self.cache_stored_bytes.labels(name).set(cache["bytes"])


class _Refresher:
    """A collector with no metrics of its own: refreshes the gauges when scraped."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = weakref.ref(metrics)

    def describe(self) -> Iterable[Any]:
        return ()

    def collect(self) -> Iterable[Any]:
        metrics = self._metrics()
        if metrics is not None:
            metrics.refresh()
        return ()
