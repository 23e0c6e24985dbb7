"""Running the server: checks before binding, one uvicorn server per process, graceful drain.

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

import gc
import importlib.util
import logging
import math
import socket
import sys
import time
from types import FrameType

import uvicorn

from msgflux.server import access_log
from msgflux.server.app import App
from msgflux.server.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ConfigError,
    ServerConfig,
    is_loopback,
)
from msgflux.server.operations import Operations
from msgflux.server.reload import check_workers, defer_hangups
from msgflux.server.runtime import build_runtime

__all__ = [
    "DrainingServer",
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


class DrainingServer(uvicorn.Server):
    """uvicorn's server with the drain of the module docstring and exit 0 after it."""

    def __init__(self, config: uvicorn.Config, app: App, drain_delay: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_delay = drain_delay
        self._drain_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded for re-raising (uvicorn would die of the signal after a clean drain).
        if self._drain_at is not None:
            self.force_exit = True  # a second signal: stop waiting for requests in flight
            self.should_exit = True
            return
        self.app.draining = True
        self._drain_at = time.monotonic() + self.drain_delay
        logger.info("draining: readiness is 503, closing the listener in %gs", self.drain_delay)
        if self.drain_delay <= 0:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self._drain_at is not None and time.monotonic() >= self._drain_at:
            self.should_exit = True
        return await super().on_tick(counter)


def _uvicorn_config(app: App, config: ServerConfig) -> uvicorn.Config:
    has = importlib.util.find_spec
    return uvicorn.Config(
        app,
        http="httptools" if has("httptools") else "h11",
        loop="uvloop" if has("uvloop") else "asyncio",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=15,
        timeout_graceful_shutdown=math.ceil(config.server.shutdown_grace),
    )


def run_worker(
    config: ServerConfig, target: Target, *, reuse_port: bool, announce: bool = True
) -> int:
    """Serve in this process until SIGTERM has drained it; returns the exit code (0)."""
    access_log.configure(config.server.access_log)
    ops = Operations(config, workers=target.workers, supervised=reuse_port)
    runtime = build_runtime(config, hooks=ops.hooks)
    try:
        sock = bind(target.host, target.port, reuse_port=reuse_port)
    except StartupError:
        runtime.close()
        raise
    app = App(runtime, ops)
    tune_gc()
    server = DrainingServer(_uvicorn_config(app, config), app, config.server.drain_delay)
    if announce:
        print_listening(config, target, sock.getsockname()[1])
    server.run(sockets=[sock])
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
    """One stderr handler for the server's and uvicorn's messages (never a request body)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("msgflux", "uvicorn"):
        log = logging.getLogger(name)
        log.handlers[:] = [handler]
        log.setLevel(level if name == "msgflux" else logging.WARNING)
        log.propagate = False
