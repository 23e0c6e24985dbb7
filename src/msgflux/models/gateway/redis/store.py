"""A state store on Redis, so that many gateway processes share one view of each deployment.

>>> gateway = ModelGateway(deployments, state="redis://127.0.0.1:6379/0")
>>> gateway = ModelGateway(deployments, state=RedisState(url, namespace="prod", timeout=0.05))

Why it is built this way:

* **Same transitions, other persistence.** :mod:`~msgflux.models.gateway.state` defines the
  transitions as pure functions (``admit_first``, ``settle_state``). Redis cannot run Python,
  so the Lua (``lua/*.lua``, see :mod:`.scripts`) is a line-by-line transcription of them
  over the same data
  (``DeploymentState``'s numbers in a hash, the rpm log and the concurrency leases in sorted
  sets). ``tests/gateway/test_redis_state.py`` drives both with one table of vectors (and random
  sequences) and compares every answer and the whole state after every step, so the two
  copies cannot drift apart unnoticed.
* **Atomic and cheap.** Each gateway operation is one Lua call: ``admit`` walks the ranked
  candidates and takes the probe slot, rpm slot and lease of the one it admits; ``settle``
  applies the outcome. Redis runs it without interleaving, so two processes can never both
  take the last rpm slot or the single half-open probe, and a call costs one round trip
  before the attempt and one after. On Redis 7+ the Lua is a function library loaded once
  (``FCALL``); elsewhere the same code runs as a script (``EVALSHA``). The per-call traffic
  goes over lean pipelined connections (:mod:`.pipe`, measured ~4x cheaper in CPU
  than redis.asyncio); redis-py serves everything else.
* **Bounded.** Keys are ``{namespace}:<kind>:<model_name>|<provider>/<model_id>`` (no URL, no
  key): the braces put a namespace in one Redis Cluster slot, which a multi-candidate script
  needs. So on a cluster (``redis+cluster://node:7000``, see :mod:`.cluster`) a store talks to
  the one node serving its namespace's slot, and follows it when a failover moves it. Writes
  keep a TTL longer than anything the state remembers (windows, open times, leases); the rpm
  log never holds more than ``rpm`` entries, the leases never more than ``max_concurrency``;
  the rings have fixed sizes.
* **Redis trouble never fails a call.** Operations time out after ``timeout`` seconds and are
  never retried (except once on a pooled connection that Redis had closed). On a Redis error
  the call goes on with process-local state: :class:`RedisState` is the Redis store wrapped
  in :class:`~msgflux.models.gateway.local_fallback.LocalFallback`, which any shared store
  can use.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import os
import re
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from msgflux.models.gateway.local_fallback import Learned, LocalFallback
from msgflux.models.gateway.redis.cluster import Connector
from msgflux.models.gateway.redis.pipe import bulk
from msgflux.models.gateway.redis.scripts import (
    ADMIT,
    EMPTY_BULK,
    INTS,
    LIBRARY,
    NCFG,
    SETTLE,
    Compiled,
    Script,
    Shape,
    decode_state,
    encode_float,
    encode_int,
    parse_admission,
)
from msgflux.models.gateway.redis.url import RedisURL, parse_url
from msgflux.models.gateway.state import (
    Admission,
    DeploymentState,
    Policy,
    Settlement,
    snapshot_state,
)

__all__ = ["RedisState"]

_MAX_BATCH = 64
"""Most operations one Lua call carries (a batch holds Redis for a few µs per operation)."""


class _Reload(Exception):
    """Retry this operation alone, on the path that connects and loads the Lua if needed."""


def _check_options(namespace: Any, timeout: Any, retry_interval: Any) -> None:
    if not isinstance(namespace, str):
        raise TypeError(f"RedisState namespace must be a str, got {namespace!r}")
    if not _NAMESPACE.match(namespace):
        raise ValueError(
            "RedisState namespace must be 1-128 characters among letters, digits and "
            f"'_.:/-', got {namespace!r}"
        )
    for field, value in (("timeout", timeout), ("retry_interval", retry_interval)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"RedisState {field} must be a number of seconds > 0, got {value!r}")
        if not (value > 0 and math.isfinite(value)) or value > 3600:
            raise ValueError(
                f"RedisState {field} must be a number of seconds > 0 and <= 3600, got {value!r}"
            )


_NAMESPACE = re.compile(r"^[A-Za-z0-9_.:/\-]{1,128}$")


class _Redis:
    """The Redis half of :class:`RedisState`: one Lua call per operation, errors raised."""

    errors: tuple[type[BaseException], ...] = (RedisError, OSError)

    def __init__(self, url: RedisURL, namespace: str, timeout: float) -> None:
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self._prefix = f"{{{namespace}}}:"
        self._compiled: weakref.WeakKeyDictionary[Policy, Compiled] = weakref.WeakKeyDictionary()
        self._ids = itertools.count(1)
        self._instance = os.urandom(6).hex()
        try:
            self._connector = Connector(url, timeout)
        except ValueError as exc:
            raise ValueError(f"RedisState url {url.redacted!r} is not usable: {exc}") from None
        # Every key of the namespace is in one slot: on a cluster, on one node.
        self._pipe = self._connector.pipe(self._prefix)
        self._apipe = self._connector.apipe(self._prefix)
        self._shapes: dict[tuple[Policy, ...], tuple[int, Shape, bool]] = {}
        self._pending: dict[
            asyncio.AbstractEventLoop,
            dict[Shape, tuple[Script, list[bytes], list[asyncio.Future[Any]]]],
        ] = {}
        self._functions = True
        """Call the Lua as Redis functions; False once FCALL proved unavailable here."""

    def is_timeout(self, exc: BaseException) -> bool:
        return isinstance(exc, RedisTimeoutError)

    def ping(self) -> None:
        self._pipe.call("PING")

    @staticmethod
    def owns(admission: Admission) -> bool:
        return isinstance(admission.token, str)

    # -- clients ----------------------------------------------------------------------------
    def _client(self) -> redis.Redis:
        """redis-py, for what is not on the per-call path (snapshots, SCAN, deletes): on a
        cluster, the node that serves the namespace's slot now."""
        client: redis.Redis = self._connector.client(
            self._prefix,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            health_check_interval=0,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return client

    @contextlib.contextmanager
    def _moves(self) -> Iterator[None]:
        """A redis-py error may mean a cluster's slots moved: look again next time."""
        try:
            yield
        except self.errors:
            self._connector.moved()
            raise

    # -- per-call plumbing --------------------------------------------------------------------
    def _compile(self, policy: Policy) -> Compiled:
        compiled = self._compiled.get(policy)
        if compiled is None:
            compiled = self._compiled[policy] = Compiled(self._prefix, policy)
        return compiled

    def _admit_shape(self, candidates: Sequence[Policy]) -> tuple[int, Shape, bool]:
        """(index of the first inactive candidate or -1, the command shape, needs a token)."""
        key = tuple(candidates)
        cached = self._shapes.get(key)
        if cached is not None:
            return cached
        keys: list[bytes] = []
        cfgs: list[bytes] = []
        needs_token = False
        stop = -1
        for i, policy in enumerate(candidates):
            if not policy.active:
                stop = i
                break
            c = self._compile(policy)
            keys.append(c.admit_keys)
            cfgs.append(c.cfg)
            needs_token = needs_token or c.needs_token
        n = len(keys)
        shape = Shape(
            2 + 1 + 3 * n + 1 + 1 + NCFG * n,
            3,
            encode_int(3 * n) + b"".join(keys),
            encode_int(n),
            b"".join(cfgs),
        )
        if len(self._shapes) >= 512:  # candidate orders are few; this only bounds the cache
            self._shapes.clear()
        self._shapes[key] = (stop, shape, needs_token)
        return stop, shape, needs_token

    def _admit_op(self, now: float, force: bool, needs_token: bool) -> tuple[bytes, str]:
        token = f"{self._instance}:{next(self._ids)}" if needs_token else ""
        op = b"".join(
            (encode_float(now), INTS[1] if force else INTS[0], bulk(token) if token else EMPTY_BULK)
        )
        return op, token

    def _finish_admit(self, raw: list[Any], token: str, stop: int) -> Admission:
        adm = parse_admission(raw, token)
        if adm.index < 0 and stop >= 0:
            return Admission(stop, skips=adm.skips)
        return adm

    @staticmethod
    def _settle_op(s: Settlement) -> bytes:
        admission = s.admission
        token = admission.token
        retry_after = s.retry_after
        return b"".join(
            (
                encode_float(s.now),
                encode_int(s.outcome),
                INTS[1] if admission.probe else INTS[0],
                bulk(token) if token else EMPTY_BULK,
                encode_int(int(s.tokens)),
                encode_float(retry_after) if retry_after else INTS[0],
                encode_float(s.duration),
            )
        )

    def _functions_unusable(self, exc: ResponseError) -> bool:
        """Did FCALL fail because functions are missing here (True) or for another reason?"""
        message = str(exc)
        if "Function not found" in message:
            return True
        if "unknown command" in message.lower() or message.startswith("NOPERM"):
            self._functions = False  # Redis < 7, or an ACL without FUNCTION/FCALL
            return True
        return False

    def _run(self, script: Script, shape: Shape, ops: Sequence[bytes]) -> Any:
        """One Lua call, one round trip (a second and third only when loading the code)."""
        pipe = self._pipe
        if self._functions:
            try:
                return pipe.call_packed(shape.frame(script.fcall, ops))
            except ResponseError as exc:
                if not self._functions_unusable(exc):
                    raise
            if self._functions:
                try:
                    pipe.call("FUNCTION", "LOAD", "REPLACE", LIBRARY)
                except ResponseError:
                    self._functions = False
                else:
                    return pipe.call_packed(shape.frame(script.fcall, ops))
        frame = shape.frame(script.evalsha, ops)
        try:
            return pipe.call_packed(frame)
        except NoScriptError:
            pipe.call("SCRIPT", "LOAD", script.source)
            return pipe.call_packed(frame)

    async def _arun(self, script: Script, shape: Shape, ops: Sequence[bytes]) -> Any:
        """Async :meth:`_run`."""
        pipe = self._apipe
        if self._functions:
            try:
                return await pipe.call_packed(shape.frame(script.fcall, ops))
            except ResponseError as exc:
                if not self._functions_unusable(exc):
                    raise
            if self._functions:
                try:
                    await pipe.call("FUNCTION", "LOAD", "REPLACE", LIBRARY)
                except ResponseError:
                    self._functions = False
                else:
                    return await pipe.call_packed(shape.frame(script.fcall, ops))
        frame = shape.frame(script.evalsha, ops)
        try:
            return await pipe.call_packed(frame)
        except NoScriptError:
            await pipe.call("SCRIPT", "LOAD", script.source)
            return await pipe.call_packed(frame)

    async def _acall(self, script: Script, shape: Shape, op: bytes) -> Any:
        """One operation, sent together with the same operations on the same deployments
        that other tasks of this event loop start in the same loop iteration.

        One Lua call then applies them one after the other (each exactly as if sent alone;
        concurrent operations may be applied in any order), which saves Redis and this
        process the per-command work for all but the first.
        """
        loop = asyncio.get_running_loop()
        if not self._apipe.ready(loop):
            return (await self._arun(script, shape, (op,)))[0]
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = {}
            loop.call_soon(self._flush, loop, pending)
        batch = pending.get(shape)
        if batch is None:
            batch = pending[shape] = (script, [], [])
        fut: asyncio.Future[Any] = loop.create_future()
        batch[1].append(op)
        batch[2].append(fut)
        try:
            return await fut
        except _Reload:
            return (await self._arun(script, shape, (op,)))[0]

    def _flush(
        self,
        loop: asyncio.AbstractEventLoop,
        pending: dict[Shape, tuple[Script, list[bytes], list[asyncio.Future[Any]]]],
    ) -> None:
        if self._pending.get(loop) is pending:
            del self._pending[loop]
        proto = self._apipe.ready(loop)
        for shape, (script, ops, futures) in pending.items():
            for start in range(0, len(ops), _MAX_BATCH):
                waiting = futures[start : start + _MAX_BATCH]
                if proto is None:  # the connection dropped meanwhile: each goes alone
                    for fut in waiting:
                        if not fut.done():
                            fut.set_exception(_Reload())
                    continue
                head = script.fcall if self._functions else script.evalsha
                sent = proto.send(shape.frame(head, ops[start : start + _MAX_BATCH]))
                sent.add_done_callback(functools.partial(_distribute, waiting))
        if proto is not None:
            proto.flush()

    # -- the shared-store operations ----------------------------------------------------------
    def register(self, policies: Sequence[Policy]) -> None:
        """Prepare each policy's keys and script arguments once (no I/O)."""
        for policy in policies:
            self._compile(policy)

    def admit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission:
        """One atomic script: skip, then admit the first candidate with room."""
        stop, shape, needs_token = self._admit_shape(candidates)
        op, token = self._admit_op(now, probe_when_all_open and stop < 0, needs_token)
        return self._finish_admit(self._run(ADMIT, shape, (op,))[0], token, stop)

    async def aadmit(
        self, candidates: Sequence[Policy], now: float, probe_when_all_open: bool = False
    ) -> Admission:
        """Async :meth:`admit` (one pipelined connection per event loop)."""
        stop, shape, needs_token = self._admit_shape(candidates)
        op, token = self._admit_op(now, probe_when_all_open and stop < 0, needs_token)
        return self._finish_admit(await self._acall(ADMIT, shape, op), token, stop)

    def settle(self, s: Settlement) -> Learned | None:
        """One atomic script: free the lease and probe slot, count tokens, move the breaker."""
        raw = self._run(SETTLE, self._compile(s.policy).settle, (self._settle_op(s),))[0]
        return _learned(raw)

    async def asettle(self, s: Settlement) -> Learned | None:
        raw = await self._acall(SETTLE, self._compile(s.policy).settle, self._settle_op(s))
        return _learned(raw)

    def snapshot(self, policies: Sequence[Policy], now: float) -> list[dict[str, Any]]:
        states = self._read(policies)
        return [snapshot_state(p, st, now) for p, st in zip(policies, states, strict=True)]

    def _read(self, policies: Sequence[Policy]) -> list[DeploymentState]:
        with self._moves():
            pipe = self._client().pipeline(transaction=True)
            for policy in policies:
                keys = self._compile(policy).keys
                pipe.hgetall(keys[0])
                pipe.zrange(keys[1], 0, -1, withscores=True)
                pipe.zrange(keys[2], 0, -1, withscores=True)
            replies = pipe.execute()
        return [decode_state(*replies[i : i + 3]) for i in range(0, len(replies), 3)]

    def info(self) -> dict[str, Any]:
        return {
            "backend": "redis",
            "url": self.url.redacted,
            "namespace": self.namespace,
            "timeout": self.timeout,
        }

    def reset(self, policies: Sequence[Policy] | None = None) -> None:
        if policies is None:
            self.clear()
            return
        keys = [k for p in policies for k in self._compile(p).keys]
        if keys:
            with self._moves():
                self._client().delete(*keys)

    def clear(self) -> int:
        """Delete every key of this namespace (other namespaces are untouched); returns how many.

        Raises the Redis error when Redis cannot be reached.
        """
        with self._moves():
            client = self._client()
            deleted = 0
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{self._prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(client.unlink(*batch))
                    batch = []
            if batch:
                deleted += int(client.unlink(*batch))
            return deleted

    def keys(self) -> list[str]:
        """Every key of this namespace (for operators and tests)."""
        with self._moves():
            client = self._client()
            keys = client.scan_iter(match=f"{self._prefix}*", count=1000)
            return sorted(k.decode() for k in keys)

    def close(self) -> None:
        self._connector.close()


class RedisState(LocalFallback):
    """Deployment state in Redis, shared by every gateway using the same ``namespace``.

    ``timeout`` (seconds) bounds what one Redis operation may add to a call; past it, or
    when Redis is down, the store serves from process memory and keeps retrying Redis every
    ``retry_interval`` seconds in the background. See the module docstring for the design.

    >>> store = RedisState("redis://127.0.0.1:6379/0", namespace="prod", timeout=0.05)
    >>> gateway = ModelGateway(deployments, state=store)
    """

    def __init__(
        self,
        url: str,
        namespace: str = "msgflux",
        timeout: float = 0.05,
        *,
        retry_interval: float = 1.0,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(
                "RedisState url must be a str such as 'redis://host:6379/0', "
                f"got {type(url).__name__}"
            )
        try:
            parsed = parse_url(url)
        except ValueError as exc:
            raise ValueError(f"RedisState url: {exc}") from None
        _check_options(namespace, timeout, retry_interval)
        self.url = parsed.redacted
        """The URL without credentials."""
        self.namespace = namespace
        self.timeout = float(timeout)
        self.redis = _Redis(parsed, namespace, self.timeout)
        super().__init__(
            self.redis,
            retry_interval=float(retry_interval),
            label=f"Redis state store {parsed.redacted} (namespace {namespace!r})",
        )

    def __repr__(self) -> str:
        return f"RedisState({self.url!r}, namespace={self.namespace!r}, timeout={self.timeout!r})"

    def state(self, policy: Policy) -> DeploymentState:
        """The shared state of one deployment (tests, debugging); raises the Redis error when
        Redis cannot be read."""
        return self.redis._read([policy])[0]

    def clear(self) -> int:
        """Delete every key of this namespace (other namespaces are untouched); returns how
        many. Raises the Redis error when Redis cannot be reached."""
        return self.redis.clear()

    def keys(self) -> list[str]:
        """Every key of this namespace (for operators and tests)."""
        return self.redis.keys()

    def _client(self) -> redis.Redis:
        return self.redis._client()

    async def aclose(self) -> None:
        """Close this event loop's connection (reopened if the store is used again)."""
        await self.redis._apipe.aclose()


def _learned(raw: Any) -> Learned | None:
    if isinstance(raw, list):
        return int(raw[0]), float(raw[1]), float(raw[2])
    return None


def _fail_all(futures: Sequence[asyncio.Future[Any]], error: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(error)


def _needs_loading(exc: BaseException) -> bool:
    if isinstance(exc, NoScriptError):
        return True
    if isinstance(exc, ResponseError):
        message = str(exc)
        return (
            "Function not found" in message
            or "unknown command" in message.lower()
            or message.startswith("NOPERM")
        )
    return False


def _distribute(futures: list[asyncio.Future[Any]], sent: asyncio.Future[Any]) -> None:
    """Hand each operation of a batch its own answer (or the batch's error)."""
    if sent.cancelled():
        _fail_all(futures, RedisConnectionError("Redis call cancelled"))
        return
    exc = sent.exception()
    if exc is not None:
        for fut in futures:
            if not fut.done():
                fut.set_exception(_Reload() if _needs_loading(exc) else exc)
        return
    for fut, answer in zip(futures, sent.result(), strict=False):
        if not fut.done():
            fut.set_result(answer)
