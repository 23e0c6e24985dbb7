"""Running the server: checks before binding, one HTTP/1.1 listener per process (:mod:`.http1`),
graceful drain.

``serve()`` refuses to start when the setup is unsafe or would silently misbehave:

* no client keys and a non-loopback ``--host``: anyone on the network could spend the
  upstream keys; it takes ``--no-auth`` to mean it;
* ``--workers N`` (N > 1) with ``rpm``/``tpm``/``max_concurrency`` limits (on a deployment or
  a client key) or a key's ``budget`` and no shared state: each process would enforce them
  alone, N times the limit in total; set ``server.state``.

SIGHUP reloads the config (:mod:`.reload`); with N workers the supervisor passes it on.

SIGTERM (or Ctrl-C) drains: readiness answers 503 at once, the listener closes after
``server.drain_delay`` seconds (default 0; give load balancers time to notice), requests and
streams in flight finish (for up to ``server.shutdown_grace`` seconds, default 600, since long
streams must not be cut), then the gateways close and the process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
import socket
import sys
from collections.abc import Coroutine
from typing import Any

from msgflux.server import access_log
from msgflux.server.app import App
from msgflux.server.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ConfigError,
    ServerConfig,
    is_loopback,
)
from msgflux.server.http1 import ClientBounds, Serving
from msgflux.server.operations import Operations
from msgflux.server.reload import check_workers, defer_hangups
from msgflux.server.runtime import build_runtime

__all__ = [
    "StartupError",
    "Target",
    "bind",
    "print_listening",
    "resolve",
    "run_worker",
    "serve",
]

logger = logging.getLogger("msgflux.server")

LOCAL_MODEL_NOTE = (
    "each worker loads its own copy of the embedded local model (about 180 MiB of RSS per "
    "worker for smollm2-135m; a larger GGUF costs its file size plus its context per worker)"
)


class StartupError(Exception):
    """The server cannot (or must not) start; the message says why and what to change."""


class Target:
    """Where and how to run: host, port, workers (the CLI's flags over the config's values)."""

    def __init__(self, host: str, port: int, workers: int) -> None:
        self.host = host
        self.port = port
        self.workers = workers


def resolve(
    config: ServerConfig, host: str | None, port: int | None, workers: int | None
) -> Target:
    settings = config.server
    return Target(
        host or settings.host or DEFAULT_HOST,
        port if port is not None else settings.port if settings.port is not None else DEFAULT_PORT,
        workers or settings.workers or 1,
    )


def check(config: ServerConfig, target: Target, no_auth: bool) -> None:
    """The refusals of the module docstring (raises :class:`StartupError`)."""
    if not config.server.keys and not is_loopback(target.host) and not no_auth:
        raise StartupError(
            f"refusing to listen on {target.host} without client keys: anyone who can reach it "
            "could use every configured upstream. Add server.keys (see docs/server.md), bind to "
            "127.0.0.1, or pass --no-auth to allow it explicitly."
        )
    if target.workers > 1:
        try:
            check_workers(config, target.workers)
        except ConfigError as exc:
            raise StartupError(exc.message) from None
        local = config.local_deployments()
        if local:
            logger.warning("%s: %s", ", ".join(local), LOCAL_MODEL_NOTE)


def bind(host: str, port: int, *, reuse_port: bool, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` (SO_REUSEPORT when several processes share it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
        if listen:
            sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


FD_RESERVE = 64
"""Descriptors a worker keeps for itself (upstream connections, logs, Redis) below
``ulimit -n`` when it caps its client connections."""


def client_bounds(config: ServerConfig) -> ClientBounds:
    """The config's client bounds, ``max_connections`` lowered to what ``ulimit -n`` allows
    (each connection is a descriptor; running out of them would fail accepts and upstream
    calls alike)."""
    settings = config.server
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = settings.max_connections
    if soft != resource.RLIM_INFINITY and cap > soft - FD_RESERVE:
        logger.warning(
            "server.max_connections=%d is over ulimit -n (%d) less %d: capping it at %d",
            cap,
            soft,
            FD_RESERVE,
            max(soft - FD_RESERVE, 1),
        )
        cap = max(soft - FD_RESERVE, 1)
    return ClientBounds(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        send_timeout=settings.send_timeout,
        keep_alive=settings.keep_alive,
        max_connections=cap,
    )


async def _serve(app: App, sock: socket.socket, config: ServerConfig) -> None:
    """Serve ``sock`` until a signal has drained the process (see the module docstring)."""
    loop = asyncio.get_running_loop()
    serving = Serving(app, loop, client_bounds(config))
    server = await loop.create_server(serving.protocol, sock=sock, backlog=2048)
    stop = asyncio.Event()

    def on_signal() -> None:
        if app.draining:  # a second signal: stop waiting for requests in flight
            logger.warning("second signal: cutting %d requests in flight", serving.active)
            serving.cut()
            stop.set()
            return
        app.draining = True
        delay = config.server.drain_delay
        logger.info("draining: readiness is 503, closing the listener in %gs", delay)
        loop.call_later(max(delay, 0.0), stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    app.ops.started()
    try:
        await stop.wait()
        server.close()
        await serving.drain(config.server.shutdown_grace)
    finally:
        await app.aclose()
        access_log.flush()


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed, else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:  # pragma: no cover - Python 3.10
        uvloop.install()
        asyncio.run(main)


def run_worker(
    config: ServerConfig, target: Target, *, reuse_port: bool, announce: bool = True
) -> int:
    """Serve in this process until SIGTERM has drained it; returns the exit code (0)."""
    access_log.configure(config.server.access_log)
    ops = Operations(config, workers=target.workers, supervised=reuse_port)
    runtime = build_runtime(config, hooks=ops.hooks, directory=ops.directory)
    try:
        sock = bind(target.host, target.port, reuse_port=reuse_port)
    except StartupError:
        runtime.close()
        raise
    app = App(runtime, ops)
    tune_gc()
    if announce:
        print_listening(config, target, sock.getsockname()[1])
    _run(_serve(app, sock, config))
    return 0


GC_THRESHOLD = 10_000
"""Allocations between two young-generation collections in a worker (Python's default: 700)."""


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a server: what was built at start-up (the
    modules, the config, the gateways) is frozen out of every collection, and young
    collections run every :data:`GC_THRESHOLD` allocations instead of 700. A request's
    objects are freed by reference counting as it ends; with Python's defaults, 32 requests
    in flight cross 700 live allocations all the time, and each collection walked the whole
    start-up heap: about 60 µs of CPU per request (BENCHMARKS.md). Cycles are still
    collected, less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 100)


def print_listening(config: ServerConfig, target: Target, port: int) -> None:
    host = f"[{target.host}]" if ":" in target.host else target.host
    names = ", ".join(config.gateways)
    print(
        f"msgflux serve: listening on http://{host}:{port} "
        f"({target.workers} worker{'s' if target.workers > 1 else ''}; gateways: {names})",
        file=sys.stderr,
        flush=True,
    )


def serve(
    config: ServerConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    no_auth: bool = False,
) -> int:
    """Check, then run one worker here or N under a supervisor; returns the exit code."""
    target = resolve(config, host, port, workers)
    check(config, target, no_auth)
    defer_hangups()  # a SIGHUP before the event loop handles them reloads once it does
    if target.workers == 1:
        return run_worker(config, target, reuse_port=False)
    from msgflux.server.workers import supervise

    build_runtime(config, shared_state=False).close()  # fail here, not in N workers
    return supervise(config, target)


def configure_logging(level: int = logging.INFO) -> None:
    """One stderr handler for the server's messages (never a request body)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("msgflux")
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
