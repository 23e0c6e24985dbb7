"""Credentials that must be fetched or refreshed by blocking I/O, kept fresh without blocking
an event loop.

Cloud SDKs refresh credentials synchronously (google-auth posts to a token endpoint, botocore
asks a container or instance metadata service, or assumes a role). :class:`Refresher` wraps
such a blocking ``refresh`` and the ``fresh()`` test that says when it is needed:

* :meth:`Refresher.ensure` (sync callers) refreshes under a lock, once, when not fresh;
* :meth:`Refresher.aensure` (async callers) never blocks the loop: the refresh runs in a
  thread (:func:`asyncio.to_thread`), single-flight per event loop (concurrent calls await the
  same refresh), and the wait is bounded by ``timeout``.

Fresh credentials cost one call of ``fresh()`` (a comparison), nothing else.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

__all__ = ["REFRESH_TIMEOUT", "Refresher"]

REFRESH_TIMEOUT = 60.0
"""Seconds an async caller waits for a credential refresh."""


class Refresher:
    """Keeps credentials fresh for sync and async callers (see the module docstring)."""

    __slots__ = ("_flights", "_lock", "fresh", "refresh", "timeout")

    def __init__(
        self,
        fresh: Callable[[], bool],
        refresh: Callable[[], None],
        timeout: float = REFRESH_TIMEOUT,
    ) -> None:
        self.fresh = fresh
        self.refresh = refresh
        self.timeout = timeout
        self._lock = threading.Lock()
        self._flights: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}

    def ensure(self) -> None:
        """Refresh now (blocking) unless fresh; concurrent threads refresh once."""
        if self.fresh():
            return
        with self._lock:
            if not self.fresh():
                self.refresh()

    async def aensure(self) -> None:
        """:meth:`ensure` in a thread, single-flight per loop, bounded by ``timeout``."""
        if self.fresh():
            return
        loop = asyncio.get_running_loop()
        flight = self._flights.get(loop)
        if flight is None:
            flight = loop.create_task(asyncio.to_thread(self.ensure))
            self._flights[loop] = flight
            flight.add_done_callback(lambda _: self._flights.pop(loop, None))
        await asyncio.wait_for(asyncio.shield(flight), self.timeout)
