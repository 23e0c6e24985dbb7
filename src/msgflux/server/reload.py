"""Config reload: SIGHUP or ``POST /admin/reload`` load the file again and swap the runtime.

A reload reads the config file the server started with, validates all of it and builds every
gateway (:func:`~msgflux.server.runtime.build_runtime`, off the event loop); only then does it
swap :attr:`App.runtime <msgflux.server.app.App.runtime>`, one reference, so each request sees
the old config or the new one, never a mix. A file that fails anywhere is rejected with its
error (logged; ``/admin/reload`` answers it as a 400) and the old config keeps serving.

Requests in flight finish on the runtime they started with; a retired runtime's gateways are
closed once its last request is over (:meth:`Reloader.release`). Breaker and limit state
survive for deployments whose identity did not change (see :mod:`.runtime`); the per-key
counters live in the app's limiter, which outlasts reloads (a new one only when
``server.state`` changes).

What a reload cannot change: ``server.host``, ``port`` and ``workers`` (the sockets and
processes exist); a changed value is logged and takes effect at the next restart. With
``--workers N`` SIGHUP goes to the supervisor, which passes it to every worker; a worker that
reloads through ``/admin/reload`` sends SIGHUP to its supervisor, so the others follow (a
worker whose file did not change since its last load does nothing).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from msgflux.server.config import ConfigError, ServerConfig, parse_config
from msgflux.server.runtime import Runtime, build_runtime

__all__ = ["Reloader", "check_workers", "defer_hangups", "hangup_deferred"]

logger = logging.getLogger("msgflux.server")

_RESTART_ONLY = ("host", "port", "workers")
_deferred: list[int] = []


def defer_hangups() -> None:
    """Until the event loop takes SIGHUP over, note it (instead of dying of it)."""
    _deferred.clear()
    signal.signal(signal.SIGHUP, lambda sig, frame: _deferred.append(sig))


def hangup_deferred() -> bool:
    """Did a SIGHUP arrive before the loop handled them (then reload once it does)?"""
    arrived = bool(_deferred)
    _deferred.clear()
    return arrived


def check_workers(config: ServerConfig, workers: int) -> None:
    """N workers without shared state must not run limits N times over (raises ConfigError)."""
    if workers <= 1:
        return
    keys = config.unshared_key_limits()
    if keys:
        raise ConfigError(
            "server.state",
            f"--workers {workers} with rpm/tpm/max_concurrency/budget on the client key(s) "
            f"{', '.join(repr(k) for k in keys)} and no shared state: each worker would count "
            f"them on its own ({workers} times the limit in total). Set server.state to a "
            "redis:// URL, or run one worker.",
        )
    unshared = config.unshared_limits()
    if unshared:
        raise ConfigError(
            "server.state",
            f"--workers {workers} with rpm/tpm/max_concurrency limits on {', '.join(unshared)} "
            f"and no shared state: each worker would enforce them on its own ({workers} times "
            "the limit in total). Set server.state to a redis:// URL, or run one worker.",
        )


class Reloader:
    """Owns the swap of ``app.runtime`` and the closing of retired runtimes."""

    def __init__(
        self,
        app: Any,
        *,
        workers: int = 1,
        supervised: bool = False,
        hooks: tuple[Any, ...] = (),
        on_swap: Callable[[Runtime, Runtime], None] | None = None,
    ) -> None:
        self.app = app
        self.workers = workers
        self.supervised = supervised
        self.hooks = hooks
        self.on_swap = on_swap
        self._in_use: dict[Runtime, int] = {}
        self._retired: set[Runtime] = set()
        self._lock = asyncio.Lock()
        self._digest: bytes | None = None
        """SHA-256 of the file text last loaded here (None: not known, so never skipped)."""

    # -- requests in flight -------------------------------------------------------------------
    def acquire(self) -> Runtime:
        """The runtime a request starts on (counted until :meth:`release`)."""
        runtime: Runtime = self.app.runtime
        self._in_use[runtime] = self._in_use.get(runtime, 0) + 1
        return runtime

    def release(self, runtime: Runtime) -> None:
        left = self._in_use[runtime] - 1
        if left:
            self._in_use[runtime] = left
            return
        del self._in_use[runtime]
        if runtime in self._retired:
            self._retire(runtime)

    def _retire(self, runtime: Runtime) -> None:
        self._retired.discard(runtime)
        try:
            runtime.close()
        except Exception:
            logger.exception("closing the previous config's gateways failed")

    # -- reloading ----------------------------------------------------------------------------
    async def reload(self, origin: str) -> tuple[Runtime, bool]:
        """Load, validate, build and swap; returns (the active runtime, whether it changed).

        Raises :class:`ConfigError` (the old runtime stays). ``origin`` is ``"signal"`` (a
        SIGHUP: nothing to do when the file is unchanged) or ``"admin"``.
        """
        async with self._lock:
            current: Runtime = self.app.runtime
            source = current.config.source
            try:
                data = await asyncio.to_thread(Path(source).read_bytes)
            except OSError as exc:
                raise ConfigError("", f"cannot read {source!r}: {exc.strerror or exc}") from None
            digest = hashlib.sha256(data).digest()
            if origin == "signal" and digest == self._digest:
                logger.info("reload: %s is unchanged; nothing to do", source)
                return current, False
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError("", f"{source!r} is not UTF-8 text: {exc}") from None
            config = await asyncio.to_thread(parse_config, text, None, source=source)
            check_workers(config, self.workers)
            runtime = await asyncio.to_thread(
                build_runtime, config, previous=current, hooks=self.hooks
            )
            self._swap(current, runtime)
            self._digest = digest
        self._warn_restart_only(current.config, config)
        logger.info(
            "reload (%s): %s loaded; gateways: %s", origin, source, ", ".join(config.gateways)
        )
        if origin == "admin" and self.supervised:
            os.kill(os.getppid(), signal.SIGHUP)  # the other workers follow
        return runtime, True

    def _swap(self, old: Runtime, new: Runtime) -> None:
        self.app.runtime = new
        if self.on_swap is not None:
            self.on_swap(old, new)
        if old in self._in_use:
            self._retired.add(old)
        else:
            self._retire(old)

    @staticmethod
    def _warn_restart_only(old: ServerConfig, new: ServerConfig) -> None:
        changed = [
            f"server.{k}" for k in _RESTART_ONLY if getattr(old.server, k) != getattr(new.server, k)
        ]
        if changed:
            logger.warning("reload: %s take effect at the next restart", ", ".join(changed))

    async def reload_logged(self, origin: str) -> None:
        """:meth:`reload`, its error logged instead of raised (for SIGHUP)."""
        try:
            await self.reload(origin)
        except ConfigError as exc:
            logger.error("reload rejected, keeping the previous config: %s", exc)
        except Exception:
            logger.exception("reload failed, keeping the previous config")

    def close_all(self) -> None:
        """Close every retired runtime now (shutdown)."""
        for runtime in list(self._retired):
            self._retire(runtime)
