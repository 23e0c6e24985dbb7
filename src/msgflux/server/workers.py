"""``--workers N``: N server processes on one port, supervised.

Each worker is a forked child that binds its own socket to the same port with SO_REUSEPORT
(the kernel spreads connections between them) and runs its own uvicorn server, gateways and
upstream connections. The parent holds the port (a bound, non-listening SO_REUSEPORT socket, so
``--port 0`` picks one port for all), restarts a worker that dies, forwards SIGTERM/SIGINT to
every worker and exits 0 once all of them have drained (1 if one failed). It passes SIGHUP on
to every worker (each reloads the config: :mod:`.reload`), and gives them one
``PROMETHEUS_MULTIPROC_DIR`` (emptied at start, removed at exit when it made it) so that any
worker answers ``/metrics`` for all (:mod:`.metrics`).

What the workers share is what ``server.state`` (Redis) shares: breakers, rpm/tpm windows and
concurrency leases; latency stats and hedging stay per worker (see the README).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from types import FrameType

from msgflux.server.config import ConfigError, ServerConfig
from msgflux.server.lifecycle import StartupError, Target, bind, print_listening, run_worker
from msgflux.server.metrics import cleanup_multiprocess, prepare_multiprocess, process_dead
from msgflux.server.reload import defer_hangups

__all__ = ["supervise"]

logger = logging.getLogger("msgflux.server")

STARTUP_FAILED = 3
"""A worker's exit code when it could not start: the supervisor stops instead of restarting."""
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_BLOCKED = (*_SIGNALS, signal.SIGHUP)
"""Blocked around fork, so a child never runs the parent's handlers."""


def _child(config: ServerConfig, target: Target) -> None:
    """The forked worker's whole life; never returns."""
    code = 1
    try:
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        defer_hangups()  # the app's loop handles SIGHUP once it runs
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _BLOCKED)
        code = run_worker(config, target, reuse_port=True, announce=False)
    except (StartupError, ConfigError) as exc:
        print(f"msgflux serve: worker {os.getpid()}: {exc}", file=sys.stderr, flush=True)
        code = STARTUP_FAILED
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def supervise(config: ServerConfig, target: Target) -> int:
    reserve = bind(target.host, target.port, reuse_port=True, listen=False)
    port = reserve.getsockname()[1]
    worker_target = Target(target.host, port, target.workers)
    children: dict[int, int] = {}
    stopping = False
    restarts: list[float] = []

    def spawn(index: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
        try:
            pid = os.fork()
            if pid == 0:
                reserve.close()
                _child(config, worker_target)
            children[pid] = index
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _BLOCKED)

    def stop_all(sig: int = signal.SIGTERM) -> None:
        for pid in list(children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def on_signal(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        stop_all(signal.SIGTERM)

    def on_hangup(sig: int, frame: FrameType | None) -> None:
        if not stopping:
            stop_all(signal.SIGHUP)

    previous = {sig: signal.signal(sig, on_signal) for sig in _SIGNALS}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hangup)
    metrics_dir = prepare_multiprocess() if config.server.metrics else None
    exit_code = 0
    try:
        for i in range(target.workers):
            spawn(i)
        print_listening(config, worker_target, port)
        while children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            index = children.pop(pid, None)
            if index is None:
                continue
            if metrics_dir is not None:
                process_dead(pid)
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                if code != 0:
                    exit_code = 1
                continue
            if code == STARTUP_FAILED:
                logger.error("worker %d could not start; stopping", pid)
                exit_code = 1
                stopping = True
                stop_all()
                continue
            now = time.monotonic()
            restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW] + [now]
            if len(restarts) > MAX_RESTARTS:
                logger.error(
                    "workers keep dying (%d restarts in %gs); stopping",
                    len(restarts),
                    RESTART_WINDOW,
                )
                exit_code = 1
                stopping = True
                stop_all()
                continue
            logger.error("worker %d exited with %s; starting a new one", pid, code)
            spawn(index)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reserve.close()
        if metrics_dir is not None:
            cleanup_multiprocess(*metrics_dir)
    return exit_code
