"""Redis Cluster: the node that serves a key, learnt from the cluster, relearnt when it moves.

Every multi-key operation keeps its keys in one hash slot: a store's keys all share the slot
of ``{namespace}``, the key limiter's those of ``{msgflux:key:<name>}``. So a command only needs
the node that serves its slot. :class:`Topology` asks any reachable node (``CLUSTER SLOTS``)
at first use and again after any error that may mean the slots moved (a connection lost, a
timeout, ``MOVED``, ``CLUSTERDOWN``); :class:`Connector` hands out, per key, a pipe with the
interface of :mod:`.pipe`'s that follows its slot, over one connection per node (and event loop).

What a failover costs: when a primary dies, commands for its slots fail until a replica is
promoted (``cluster-node-timeout`` plus an election: seconds); the gateway store's local
fallback (:mod:`..local_fallback`) and the key limiter serve those calls from process memory
meanwhile, and the first check after the promotion finds the new primary. A ``MOVED`` answer
(slots resharded, or an old primary back as a replica) is followed at once for that command.
An ``ASK`` (a slot half-way through a migration) fails the command like a lost connection.
Lua is loaded on whichever node answers ``NOSCRIPT`` (or lacks the function library), so each
node gets it when it first serves a slot, a promoted replica included.

The same :class:`Connector` serves a single Redis (``redis://``, ``rediss://``, ``unix://``):
then every key gets the one pipe, exactly as before clusters existed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import hiredis
from redis.crc import key_slot as _crc_slot
from redis.exceptions import AskError, ClusterDownError, MovedError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from msgflux._time import Clock
from msgflux.models.gateway.redis.pipe import (
    AsyncPipe,
    Endpoint,
    SyncPipe,
    _Protocol,
    _SyncConnection,
    endpoint,
)
from msgflux.models.gateway.redis.url import RedisURL

__all__ = [
    "REFRESH_INTERVAL",
    "SLOTS",
    "AsyncSlotPipe",
    "Connector",
    "SyncSlotPipe",
    "Topology",
    "key_slot",
    "parse_slots",
]

SLOTS = 16384
REFRESH_INTERVAL = 0.1
"""Seconds between two asks for the slot map (errors in a burst ask once)."""

Address = tuple[str, int]
_T = TypeVar("_T")
_MOVES = (RedisConnectionError, RedisTimeoutError, ClusterDownError, AskError, OSError)
"""Errors after which the slot map may be out of date."""


_CLUSTER_SLOTS = b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n"


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key`` (only the ``{...}`` part counts when there is one)."""
    return int(_crc_slot(key.encode() if isinstance(key, str) else key))


def parse_slots(reply: Sequence[Any], asked: Address) -> list[tuple[int, int, Address]]:
    """``CLUSTER SLOTS`` as (first slot, last slot, primary's address); a primary announced
    without a host is the node that was ``asked``."""
    out = []
    for entry in reply:
        start, end, primary = int(entry[0]), int(entry[1]), entry[2]
        host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
        if host in ("", "?"):
            host = asked[0]
        out.append((start, end, (host, int(primary[1]))))
    return out


class Topology:
    """Which node serves each slot (see the module docstring). Thread-safe."""

    def __init__(self, url: RedisURL, timeout: float, clock: Clock | None = None) -> None:
        self.seeds = url.seeds
        self.timeout = timeout
        self.clock = clock or Clock()
        self._template = endpoint(url.node(*self.seeds[0]))
        self._slots: list[Address | None] = [None] * SLOTS
        self._nodes: list[Address] = []
        self._stale = True
        self._asked = -math.inf
        self._lock = threading.Lock()

    def endpoint(self, address: Address) -> Endpoint:
        """How to reach the node at ``address`` (the URL's TLS and credentials)."""
        return dataclasses.replace(self._template, host=address[0], port=address[1])

    def known(self, slot: int) -> Address | None:
        """The node last known to serve ``slot`` (no I/O)."""
        return self._slots[slot]

    def invalidate(self) -> None:
        """The map may be out of date: ask again before the next command."""
        self._stale = True

    def moved(self, slot: int, address: Address) -> None:
        """A node answered ``MOVED``: the slot is at ``address`` now (others may have moved)."""
        self._slots[slot] = address
        self._stale = True

    def _due(self) -> bool:
        return self._stale and self.clock.perf() - self._asked >= REFRESH_INTERVAL

    def locate(self, slot: int) -> Address:
        """The node serving ``slot``, asking the cluster first when the map is out of date
        (or, for a slot not known yet, waiting for the ask under way)."""
        if self._due() or self._slots[slot] is None:
            self.refresh()
        return self._answer(slot)

    async def alocate(self, slot: int) -> Address:
        """:meth:`locate` for the event loop (the asking runs in a thread)."""
        if self._due() or self._slots[slot] is None:
            await asyncio.to_thread(self.refresh)
        return self._answer(slot)

    def _answer(self, slot: int) -> Address:
        address = self._slots[slot]
        if address is None:
            raise ClusterDownError(f"no Redis Cluster node is known to serve slot {slot}")
        return address

    def refresh(self) -> None:
        """Ask the known nodes, then the URL's, for the slot map (raises when none answers)."""
        with self._lock:
            if not self._due():
                return
            self._asked = self.clock.perf()
            error: BaseException | None = None
            for address in dict.fromkeys([*self._nodes, *self.seeds]):
                try:
                    ranges = parse_slots(self._ask(address), address)
                except (RedisError, OSError, ValueError, IndexError, TypeError) as exc:
                    error = exc
                    continue
                if not ranges:  # a node not (yet) part of a cluster knows no slots
                    error = ClusterDownError(f"the node {address[0]}:{address[1]} serves no slots")
                    continue
                slots: list[Address | None] = [None] * SLOTS
                for start, end, primary in ranges:
                    slots[start : end + 1] = [primary] * (end - start + 1)
                self._slots = slots
                self._nodes = list(dict.fromkeys(primary for _, _, primary in ranges))
                self._stale = False
                return
            raise RedisConnectionError(f"no Redis Cluster node answered CLUSTER SLOTS: {error}")

    def _ask(self, address: Address) -> Any:
        conn = _SyncConnection(self.endpoint(address), self.timeout)
        try:
            return conn.request(_CLUSTER_SLOTS)
        finally:
            conn.close()


class AsyncSlotPipe:
    """:class:`~.pipe.AsyncPipe`'s interface, to whichever node serves ``slot`` now."""

    def __init__(self, connector: Connector, topology: Topology, slot: int) -> None:
        self.connector = connector
        self.topology = topology
        self.slot = slot

    def ready(self, loop: asyncio.AbstractEventLoop) -> _Protocol | None:
        address = self.topology.known(self.slot)
        if address is None:
            return None
        return self.connector.node_apipe(address).ready(loop)

    async def call(self, *args: Any) -> Any:
        return await self.call_packed(hiredis.pack_command(args))

    async def call_packed(self, frame: bytes) -> Any:
        topology = self.topology
        address = await topology.alocate(self.slot)
        try:
            return await self.connector.node_apipe(address).call_packed(frame)
        except MovedError as moved:
            target = (moved.host, int(moved.port))
            topology.moved(self.slot, target)
            return await self.connector.node_apipe(target).call_packed(frame)
        except _MOVES:
            topology.invalidate()
            raise

    async def aclose(self) -> None:
        await self.connector.aclose()


class SyncSlotPipe:
    """:class:`~.pipe.SyncPipe`'s interface, to whichever node serves ``slot`` now."""

    def __init__(self, connector: Connector, topology: Topology, slot: int) -> None:
        self.connector = connector
        self.topology = topology
        self.slot = slot

    def call(self, *args: Any) -> Any:
        return self.call_packed(hiredis.pack_command(args))

    def call_packed(self, frame: bytes) -> Any:
        topology = self.topology
        address = topology.locate(self.slot)
        try:
            return self.connector.node_pipe(address).call_packed(frame)
        except MovedError as moved:
            target = (moved.host, int(moved.port))
            topology.moved(self.slot, target)
            return self.connector.node_pipe(target).call_packed(frame)
        except _MOVES:
            topology.invalidate()
            raise

    def close(self) -> None:
        self.connector.close()


class Connector:
    """Pipes (and redis-py clients) to the node that serves a key; see the module docstring.

    >>> connector = Connector(parse_url("redis+cluster://127.0.0.1:7000"), timeout=0.05)
    >>> await connector.apipe("{msgflux:key:team-a}:rpm").call("ZCARD", "{msgflux:key:team-a}:rpm")
    """

    def __init__(self, url: RedisURL, timeout: float, clock: Clock | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.topology = Topology(url, timeout, clock) if url.cluster else None
        self._single = None if url.cluster else endpoint(url.normalized)
        self._apipes: dict[Address | None, AsyncPipe] = {}
        self._pipes: dict[Address | None, SyncPipe] = {}
        self._aslots: dict[int, AsyncSlotPipe] = {}
        self._sslots: dict[int, SyncSlotPipe] = {}
        self._clients: dict[Address | None, Any] = {}
        self._lock = threading.Lock()

    def _endpoint(self, address: Address | None) -> Endpoint:
        if address is None or self.topology is None:
            assert self._single is not None
            return self._single
        return self.topology.endpoint(address)

    def _get(self, table: dict[Any, _T], key: Any, make: Callable[[], _T]) -> _T:
        found = table.get(key)
        if found is None:
            with self._lock:
                found = table.get(key)
                if found is None:
                    found = table[key] = make()
        return found

    def node_apipe(self, address: Address | None) -> AsyncPipe:
        """The async pipe of one node (``None``: the single Redis)."""
        return self._get(
            self._apipes, address, lambda: AsyncPipe(self._endpoint(address), self.timeout)
        )

    def node_pipe(self, address: Address | None) -> SyncPipe:
        return self._get(
            self._pipes, address, lambda: SyncPipe(self._endpoint(address), self.timeout)
        )

    def apipe(self, key: str) -> AsyncPipe | AsyncSlotPipe:
        """An async pipe to the node serving ``key``."""
        topology = self.topology
        if topology is None:
            return self.node_apipe(None)
        slot = key_slot(key)
        return self._get(self._aslots, slot, lambda: AsyncSlotPipe(self, topology, slot))

    def pipe(self, key: str) -> SyncPipe | SyncSlotPipe:
        """A blocking pipe to the node serving ``key``."""
        topology = self.topology
        if topology is None:
            return self.node_pipe(None)
        slot = key_slot(key)
        return self._get(self._sslots, slot, lambda: SyncSlotPipe(self, topology, slot))

    def client(self, key: str, **options: Any) -> Any:
        """A redis-py ``Redis`` on the node serving ``key`` now (for what is off the per-call
        path: snapshots, SCAN, deletes). ``options`` apply when the client is created."""
        import redis

        if self.topology is None:
            address: Address | None = None
            url = self.url.normalized
        else:
            address = self.topology.locate(key_slot(key))
            url = self.url.node(*address)
        return self._get(self._clients, address, lambda: redis.Redis.from_url(url, **options))

    def moved(self) -> None:
        """A redis-py client met an error that may mean the slots moved."""
        if self.topology is not None:
            self.topology.invalidate()

    async def aclose(self) -> None:
        """Close this event loop's connections (reopened on the next call)."""
        for pipe in list(self._apipes.values()):
            await pipe.aclose()

    def close(self) -> None:
        with self._lock:
            pipes, self._pipes = list(self._pipes.values()), {}
            clients, self._clients = list(self._clients.values()), {}
        for pipe in pipes:
            pipe.close()
        for client in clients:
            client.close()
