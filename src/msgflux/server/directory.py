"""Virtual keys at hand: this process's copy of the key store, kept current.

Authenticating a request must not wait for Redis, so each process keeps every virtual key's
record indexed by its digests (:meth:`Directory.lookup`: one dict read) and keeps that copy
current: it reads the store's version every :data:`POLL` seconds and reloads the records when
the version moved, so a key revoked on any worker or instance is refused everywhere within
about that time. A presented key the copy does not know may have been created a moment ago
elsewhere: the app then awaits :meth:`Directory.refresh` before answering (one version read,
shared by every request waiting at the same time, and started after each of them arrived), so
a new key works on every instance at once.

When the store cannot be read the last copy keeps serving (a warning a minute at most) and
the poll goes on; a memory store (no ``server.state``) is this process's own, so its copy is
current by construction and nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from msgflux._secrets import scrub
from msgflux._time import Clock
from msgflux.server.auth import Principal
from msgflux.server.keystore import KeyStore
from msgflux.server.vkeys import VirtualKey

__all__ = ["POLL", "Directory"]

logger = logging.getLogger("msgflux.server")

POLL = 0.25
"""Seconds between two version reads: a revocation reaches every process within about this."""
_WARN_EVERY = 60.0


class Directory:
    """This process's virtual keys (see the module docstring)."""

    def __init__(self, store: KeyStore, clock: Clock | None = None, poll: float = POLL) -> None:
        self.store = store
        self.clock = clock or Clock()
        self.poll = poll
        self.version = -1
        """The store version the copy reflects (-1: never read)."""
        self._records: dict[str, VirtualKey] = {}
        self._index: dict[bytes, tuple[VirtualKey, Principal]] = {}
        self._pending: asyncio.Future[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._warned = -math.inf

    # -- reads (no I/O) ----------------------------------------------------------------------
    def lookup(self, digest: bytes) -> Principal | None:
        """The principal of the virtual key whose secret has this SHA-256, if it is accepted
        now (not revoked, not expired; a rotated-out secret within its grace period)."""
        found = self._index.get(digest)
        if found is None:
            return None
        record, principal = found
        return principal if record.accepts(digest, self.clock.time()) else None

    def knows(self, digest: bytes) -> bool:
        """The copy holds a record for this digest (accepted or not)."""
        return digest in self._index

    def records(self) -> list[VirtualKey]:
        return sorted(self._records.values(), key=lambda r: r.name)

    def record(self, name: str) -> VirtualKey | None:
        return self._records.get(name)

    # -- keeping current ---------------------------------------------------------------------
    def install(self, version: int, records: list[VirtualKey]) -> None:
        """Replace the copy (one reference swap per table: a lookup sees the old or the new)."""
        index: dict[bytes, tuple[VirtualKey, Principal]] = {}
        old = self._index
        for record in records:
            found = old.get(record.digest)
            if found is not None and found[0] is record:  # unchanged (the store reuses it)
                principal = found[1]
            else:
                principal = Principal(record.name, record.models, record.limits)
            for digest in record.digests():
                index[digest] = (record, principal)
        self._records = {r.name: r for r in records}
        self._index = index
        self.version = version

    async def _load(self) -> None:
        if self.version >= 0 and await self.store.version() == self.version:
            return
        version, records = await self.store.load()
        self.install(version, records)

    def refresh(self) -> asyncio.Future[None]:
        """Bring the copy up to date: awaitable, never raises (a failure is logged)."""
        pending = self._pending
        if pending is None:
            pending = self._pending = asyncio.get_running_loop().create_future()
            if self._worker is None:
                self._worker = asyncio.ensure_future(self._work())
        return asyncio.shield(pending)

    async def _work(self) -> None:
        """Serve the refreshes asked for, one read at a time: a caller that asked while a read
        was under way gets the next one, which starts after it asked."""
        try:
            while (pending := self._pending) is not None:
                self._pending = None
                try:
                    await self._load()
                except Exception as exc:
                    self._failed(exc)
                if not pending.done():
                    pending.set_result(None)
        finally:
            self._worker = None

    def _failed(self, exc: BaseException) -> None:
        now = self.clock.perf()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            logger.warning(
                "virtual keys: the key store cannot be read (%s); serving the last copy "
                "(%d keys) until it can",
                scrub(f"{type(exc).__name__}: {exc}"),
                len(self._records),
            )

    async def _poll_forever(self) -> None:
        while True:
            await self.refresh()
            await self.clock.asleep(self.poll)

    def start(self) -> None:
        """In the event loop: load the copy, then poll a shared store."""
        if self._poller is None:
            if self.store.shared:
                self._poller = asyncio.ensure_future(self._poll_forever())
            else:
                self.refresh()  # a memory store: one load, nothing to poll

    def use(self, store: KeyStore) -> None:
        """Serve from another store (``server.state`` changed): its keys replace the copy."""
        self.store = store
        self.version = -1
        self.install(-1, [])
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
        with contextlib.suppress(RuntimeError):  # no running loop: start() will load it
            asyncio.get_running_loop()
            self.start()

    async def aclose(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        await self.store.aclose()
