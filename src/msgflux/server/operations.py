"""What the server does around each request: key limits, metrics, the access log, reloads,
the virtual keys (:mod:`.directory`) and the dashboard's activity (:mod:`.activity`).

:class:`Operations` is built once per process, before the first runtime (its
:attr:`~Operations.hooks` go to every gateway's ``on_complete``), and outlives reloads: the
key limiter's counters and the metrics' series are the process's, not a config's. The app
calls :meth:`~Operations.begin` and :meth:`~Operations.finish` around every request,
:meth:`~Operations.started` once its event loop runs (SIGHUP, the gauges' refresh) and
:meth:`~Operations.aclose` at shutdown.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import signal
import time
from typing import Any

from msgflux.server import access_log
from msgflux.server.activity import Activity, failure_entry
from msgflux.server.config import ServerConfig
from msgflux.server.directory import Directory
from msgflux.server.exchange import Exchange, closed, opened, settle
from msgflux.server.key_admin import KeyAdmin
from msgflux.server.keystore import make_keystore
from msgflux.server.limits import Limiter, MemoryLimiter
from msgflux.server.metrics import ServerMetrics
from msgflux.server.reload import Reloader, hangup_deferred
from msgflux.server.responses_store import ResponseStore, make_store
from msgflux.server.runtime import Runtime

__all__ = ["Operations", "make_limiter"]

logger = logging.getLogger("msgflux.server")

_QUIET = ("/health/", "/metrics", "/ui", "/admin/dashboard")
"""Paths neither counted nor logged (probes, scrapes and the dashboard's refreshes would drown
the rest)."""
_QUIET_READS = ("/admin/keys", "/admin/audit")
"""Paths whose GETs are quiet too (the dashboard reads them; their changes are logged)."""


def make_limiter(state: str | None) -> Limiter:
    """The key limiter for ``server.state``: Redis when set, else this process's memory."""
    if state is None:
        return MemoryLimiter()
    from msgflux.server.limits_redis import RedisLimiter

    return RedisLimiter(state)


class Operations:
    """See the module docstring."""

    def __init__(self, config: ServerConfig, *, workers: int = 1, supervised: bool = False) -> None:
        self.workers = workers
        self.supervised = supervised
        self.metrics = ServerMetrics() if config.server.metrics else None
        self.hooks: tuple[Any, ...] = (
            (self.metrics.gateway.observe,) if self.metrics is not None else ()
        )
        self.limiter = make_limiter(config.server.state)
        self.responses: ResponseStore = make_store(config.server.state, config.server.responses_ttl)
        """Stored responses of the Responses API (shared through ``server.state``)."""
        self.directory = Directory(make_keystore(config.server.state))
        """The virtual keys (in ``server.state``, else this process's memory)."""
        self.key_admin = KeyAdmin(self.directory)
        self.activity = Activity(config.server.state)
        """Requests and spend per minute, for the dashboard."""
        self.access_log = config.server.access_log
        self.observing = self.metrics is not None or self.access_log
        """Someone reads the requests' status and timings (else ``send`` is not wrapped)."""
        self.reloader: Reloader | None = None
        self.app: Any = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._refresher: asyncio.Task[None] | None = None

    def attach(self, app: Any) -> None:
        """Serve ``app`` (its ``runtime`` is the first config)."""
        self.app = app
        self.reloader = Reloader(
            app,
            workers=self.workers,
            supervised=self.supervised,
            hooks=self.hooks,
            on_swap=self._swapped,
        )
        if self.metrics is not None:
            self.metrics.watch(app.runtime, self.limiter)

    # -- per request --------------------------------------------------------------------------
    def begin(self, scope: Any) -> tuple[Exchange, contextvars.Token[Exchange | None]]:
        exchange = Exchange(scope["method"], scope["path"], self.limiter)
        if self.metrics is not None:
            self.metrics.serving += 1
        return exchange, opened(exchange)

    def finish(self, exchange: Exchange, token: contextvars.Token[Exchange | None]) -> None:
        """The request is over (whatever happened): settle its key's admission, count it,
        log it."""
        try:
            settle()
        finally:
            closed(token)
        exchange.ended = time.perf_counter()
        metrics = self.metrics
        if metrics is not None:
            metrics.serving -= 1
        if exchange.path.startswith(_QUIET) or (
            exchange.method == "GET" and exchange.path.startswith(_QUIET_READS)
        ):
            return
        try:
            if exchange.route is not None and exchange.rejected is None:
                self._count(exchange)
            if metrics is not None:
                metrics.observe(exchange)
            if self.access_log:
                access_log.log(exchange)
        except Exception:  # never fail a request for its bookkeeping
            logger.exception("recording a request failed")

    def _count(self, exchange: Exchange) -> None:
        """The request in the dashboard's activity (and its failed attempts, if any)."""
        route, principal = exchange.route, exchange.principal
        assert route is not None
        key = principal.name if principal is not None else "anonymous"
        record = exchange.record
        cost = record.cost if record is not None and record.cost else 0.0
        attempts = getattr(exchange.error or exchange.answer, "attempts", None) or ()
        failure = None
        if exchange.error is not None or any(a.exception is not None for a in attempts):
            error = type(exchange.error).__name__ if exchange.error is not None else None
            failure = failure_entry(
                exchange.began, route.name, key, exchange.status, error, attempts
            )
        self.activity.record(route.name, key, exchange.error is not None, cost, failure)

    # -- reloads ------------------------------------------------------------------------------
    def reloaded(self, ok: bool, error: BaseException | None = None) -> None:
        if error is not None:
            logger.error("reload rejected, keeping the previous config: %s", error)
        if self.metrics is not None:
            self.metrics.reloads.labels("ok" if ok else "error").inc()

    async def _reload_on_signal(self) -> None:
        assert self.reloader is not None
        try:
            _, changed = await self.reloader.reload("signal")
        except Exception as exc:
            self.reloaded(False, exc)
        else:
            if changed:
                self.reloaded(True)

    def _swapped(self, old: Runtime, new: Runtime) -> None:
        if self.metrics is not None:
            self.metrics.watch(new, self.limiter)
        state, ttl = new.config.server.state, new.config.server.responses_ttl
        if state != old.config.server.state or ttl != old.config.server.responses_ttl:
            stored, self.responses = self.responses, make_store(state, ttl)
            self._spawn(stored.aclose())  # in memory, what it held is gone with it
        if state == old.config.server.state:
            return
        keystore = self.directory.store
        self.directory.use(make_keystore(state))
        self._spawn(keystore.aclose())
        activity, self.activity = self.activity, Activity(state)
        self.activity.start()
        self._spawn(activity.aclose())
        previous, self.limiter = self.limiter, make_limiter(state)
        if self.metrics is not None:
            self.metrics.watch(new, self.limiter)
        self._spawn(previous.aclose())  # its tickets in flight still settle on it first
        app = self.app
        if app is not None:
            from msgflux.server.health import StateProbe

            probe, app.state_probe = app.state_probe, StateProbe(state) if state else None
            if probe is not None:
                self._spawn(probe.aclose())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- process life -------------------------------------------------------------------------
    def started(self) -> None:
        """In the event loop, at startup: SIGHUP reloads; gauges refresh (N workers)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self._reload_on_signal()))
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            logger.debug("SIGHUP reload is unavailable here")
        else:
            if hangup_deferred():  # a SIGHUP came while this process was starting
                self._spawn(self._reload_on_signal())
        metrics = self.metrics
        if metrics is not None and metrics.multiprocess_dir:
            self._refresher = loop.create_task(metrics.refresh_forever())
        self.directory.start()
        self.activity.start()

    async def aclose(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.limiter.aclose()
        await self.responses.aclose()
        await self.directory.aclose()
        await self.activity.aclose()
        if self.reloader is not None:
            self.reloader.close_all()
