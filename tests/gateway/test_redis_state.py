"""The Redis state store against a real ``redis-server`` (see ``tests/redis_server.py``).

The breaker and limit transitions exist twice: as Python (``breaker.py``, ``limits.py``,
``state.py``) and as the Lua that Redis runs. The vector tests below drive both with the same
operations and require the same answers and the same stored state after every step, so the
two copies cannot drift apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import importlib
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from msgflux.models.gateway.breaker import Breaker
from msgflux.models.gateway.redis import RedisState
from msgflux.models.gateway.state import (
    FAILURE,
    IGNORED,
    SUCCESS,
    Admission,
    DeploymentState,
    MemoryStore,
    Policy,
    Settlement,
)
from tests.redis_server import RedisServer
from tests.store_contract import T0, StoreContract

pytestmark = pytest.mark.redis

_namespaces = iter(range(1, 1_000_000))


def fresh_namespace() -> str:
    return f"test-{os.getpid()}-{next(_namespaces)}"


@pytest.fixture(params=["functions", "scripts"])
def store(request: pytest.FixtureRequest, redis_url: str) -> Iterator[RedisState]:
    """The store as Redis >= 7 runs it (FCALL), and as older servers do (EVALSHA)."""
    s = RedisState(redis_url, namespace=fresh_namespace(), timeout=1.0)
    s._functions = request.param == "functions"
    yield s
    s.close()


class TestRedisStoreContract(StoreContract):
    """Everything the memory store promises, the Redis store keeps."""


# -- the same vectors through Python and Lua -----------------------------------------------------
def _policies() -> dict[str, Policy]:
    return {
        "threshold": Policy(
            "threshold",
            "mock",
            "m1",
            breaker=Breaker(
                failure_threshold=2,
                failure_rate=None,
                open_for=5,
                max_open_for=17,
                probe_timeout=7,
                slow_call_duration=1.0,
            ),
        ),
        "rate": Policy(
            "rate",
            "mock",
            "m2",
            breaker=Breaker(
                failure_threshold=None,
                failure_rate=0.5,
                minimum_calls=4,
                window=7.5,
                open_for=3.25,
                half_open_probes=2,
            ),
            rpm=4,
        ),
        "limits": Policy(
            "limits",
            "mock",
            "m3",
            breaker=Breaker(failure_threshold=3, open_for=2, max_open_for=9),
            rpm=6,
            tpm=50,
            max_concurrency=2,
            lease=4.5,
        ),
        "tpm": Policy("tpm", "mock", "m4", breaker=None, tpm=30, max_concurrency=3, lease=11),
        "free": Policy("free", "mock", "m5", breaker=None),
    }


Op = tuple[Any, ...]

# Each vector: (name, ops). Ops: ("admit", [names], dt, probe_when_all_open) or
# ("settle", k, outcome, dt, tokens, retry_after, duration), k = index of an earlier admit
# op (its admitted candidate is settled). dt = seconds the clock moves before the op.
VECTORS: list[tuple[str, list[Op]]] = [
    (
        "consecutive failures open, probe fails and doubles, probe succeeds",
        [
            ("admit", ["threshold"], 0, False),
            ("settle", 0, FAILURE, 0.1, 0, 0.0, 0.2),
            ("admit", ["threshold"], 0.1, False),
            ("settle", 2, FAILURE, 0.1, 0, 0.0, 0.2),
            ("admit", ["threshold", "free"], 1, False),
            ("admit", ["threshold"], 4.5, False),
            ("settle", 5, FAILURE, 0.5, 0, 0.0, 0.1),
            ("admit", ["threshold"], 5, False),
            ("admit", ["threshold"], 5.5, False),
            ("admit", ["threshold"], 5.01, False),
            ("settle", 9, SUCCESS, 0.2, 0, 0.0, 0.1),
            ("admit", ["threshold"], 0.1, False),
        ],
    ),
    (
        "slow successes count, Retry-After extends and is capped",
        [
            ("admit", ["threshold"], 0, False),
            ("settle", 0, SUCCESS, 0.3, 0, 0.0, 1.5),
            ("admit", ["threshold"], 0, False),
            ("settle", 2, FAILURE, 0.3, 0, 12.5, 0.0),
            ("admit", ["threshold"], 12.2, False),
            ("admit", ["threshold"], 0.5, False),
            ("settle", 5, FAILURE, 0, 0, 40.0, 0.0),
            ("admit", ["threshold"], 16.9, False),
            ("admit", ["threshold"], 0.2, False),
        ],
    ),
    (
        "failure rate over a sliding window, two probe slots",
        [
            *[
                op
                for i in range(3)
                for op in (
                    ("admit", ["rate"], 0.9, False),
                    ("settle", 2 * i, FAILURE if i % 2 else SUCCESS, 0.05, 0, 0.0, 0.0),
                )
            ],
            ("admit", ["rate"], 8, False),
            ("settle", 6, FAILURE, 0, 0, 0.0, 0.0),
            ("admit", ["rate"], 0.1, False),
            ("settle", 8, FAILURE, 0, 0, 0.0, 0.0),
            ("admit", ["rate"], 0.1, False),
            ("settle", 10, FAILURE, 0, 0, 0.0, 0.0),
            ("admit", ["rate", "free"], 3.3, False),
            ("admit", ["rate", "free"], 0, False),
            ("admit", ["rate", "free"], 0, False),
            ("settle", 12, SUCCESS, 0.1, 0, 0.0, 0.0),
            ("settle", 13, FAILURE, 0.1, 0, 0.0, 0.0),
            ("admit", ["rate"], 0.1, False),
        ],
    ),
    (
        "rpm sliding log, tpm ring, concurrency leases, skips then fallback",
        [
            ("admit", ["limits", "tpm"], 0, False),
            ("admit", ["limits", "tpm"], 0.25, False),
            ("admit", ["limits", "tpm"], 0.25, False),
            ("settle", 0, SUCCESS, 0.5, 30, 0.0, 0.0),
            ("admit", ["limits", "tpm"], 0.25, False),
            ("settle", 1, SUCCESS, 1, 25, 0.0, 0.0),
            ("admit", ["limits", "tpm"], 0.25, False),
            ("settle", 2, IGNORED, 1, 20, 0.0, 0.0),
            ("admit", ["limits", "tpm", "free"], 5, False),
            ("admit", ["limits", "tpm", "free"], 1, False),
            ("admit", ["tpm", "limits"], 55, False),
            ("admit", ["limits"], 1, False),
        ],
    ),
    (
        "every candidate open: probe the one that reopens first",
        [
            ("admit", ["threshold"], 0, False),
            ("settle", 0, FAILURE, 0, 0, 0.0, 0.0),
            ("admit", ["threshold"], 0, False),
            ("settle", 2, FAILURE, 0, 0, 0.0, 0.0),
            *[
                op
                for i in range(3)
                for op in (
                    ("admit", ["limits"], 0.01, False),
                    ("settle", 4 + 2 * i, FAILURE, 0, 0, 0.0, 0.0),
                )
            ],
            ("admit", ["threshold", "limits"], 0.5, False),
            ("admit", ["threshold", "limits"], 0, True),
            ("admit", ["threshold", "limits"], 0, True),
            ("admit", ["threshold", "limits", "free"], 0, True),
        ],
    ),
]


def _random_ops(seed: int, n: int = 60) -> list[Op]:
    rng = random.Random(seed)
    names = list(_policies())
    ops: list[Op] = []
    admits: list[int] = []
    for _ in range(n):
        dt = rng.choice([0, 0, 0.001, rng.uniform(0, 2), rng.uniform(0, 9), rng.uniform(20, 70)])
        if admits and rng.random() < 0.5:
            k = admits.pop(rng.randrange(len(admits)))
            outcome = rng.choice([SUCCESS, SUCCESS, FAILURE, FAILURE, IGNORED])
            tokens = rng.choice([0, 0, 5, 17, 40])
            retry_after = rng.choice([0.0, 0.0, rng.uniform(0, 30)])
            ops.append(("settle", k, outcome, dt, tokens, retry_after, rng.uniform(0, 1.5)))
        else:
            picked = rng.sample(names, rng.randint(1, 3))
            admits.append(len(ops))
            ops.append(("admit", picked, dt, rng.random() < 0.3))
    return ops


def _normalized(st: DeploymentState) -> dict[str, Any]:
    out = dataclasses.asdict(st)
    out["requests"] = sorted(st.requests)
    out["leases"] = sorted(st.leases)
    return out


def _view(adm: Admission) -> tuple[Any, ...]:
    return (adm.index, adm.probe, adm.skips, bool(adm.token))


def _replay(redis_store: Any, ops: list[Op]) -> int:
    """Run ops on a memory store and on Redis; compare answers and states after each step."""
    policies = _policies()
    memory = MemoryStore()
    now = T0 + 0.123456789
    results: dict[int, tuple[list[Policy], Admission, Admission]] = {}
    for i, op in enumerate(ops):
        if op[0] == "admit":
            _, names, dt, force = op
            now += dt
            cands = [policies[n] for n in names]
            a = memory.admit(cands, now, force)
            b = redis_store.admit(cands, now, force)
            assert _view(a) == _view(b), f"step {i} {op}"
            results[i] = (cands, a, b)
        else:
            _, k, outcome, dt, tokens, retry_after, duration = op
            now += dt
            cands, a, b = results[k]
            if a.index < 0:
                continue
            p = cands[a.index]
            memory.settle(Settlement(p, a, outcome, now, tokens, retry_after, duration))
            redis_store.settle(Settlement(p, b, outcome, now, tokens, retry_after, duration))
        for p in policies.values():
            if p.active:
                expected = _normalized(memory.state(p))
                assert _normalized(redis_store.state(p)) == expected, f"step {i} {op} {p.name}"
        for p, snap in zip(
            policies.values(), redis_store.snapshot(list(policies.values()), now), strict=True
        ):
            assert snap == memory.snapshot([p], now)[0], f"step {i} {op} {p.name}"
    assert redis_store.healthy
    return len(ops)


@pytest.mark.parametrize("name, ops", VECTORS, ids=[v[0] for v in VECTORS])
def test_lua_matches_python_on_vectors(store: RedisState, name: str, ops: list[Op]) -> None:
    _replay(store, ops)


def test_lua_matches_python_on_random_sequences(store: RedisState) -> None:
    for seed in range(15):
        store.reset()
        _replay(store, _random_ops(seed))


class _AsyncAsSync:
    """Drives the async methods from a sync test, so _replay checks the async path too."""

    def __init__(self, store: RedisState, loop: asyncio.AbstractEventLoop) -> None:
        self.store = store
        self.loop = loop
        self.state = store.state
        self.snapshot = store.snapshot

    @property
    def healthy(self) -> bool:
        return self.store.healthy

    def admit(self, *args: Any) -> Admission:
        return self.loop.run_until_complete(self.store.aadmit(*args))

    def settle(self, s: Settlement) -> None:
        self.loop.run_until_complete(self.store.asettle(s))


def test_async_path_matches_python_on_random_sequences(store: RedisState) -> None:
    loop = asyncio.new_event_loop()
    try:
        for seed in range(100, 106):
            store.reset()
            _replay(_AsyncAsSync(store, loop), _random_ops(seed))
        loop.run_until_complete(store.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()


# -- keys, TTLs, namespaces --------------------------------------------------------------------
def _exercise(store: RedisState, p: Policy, now: float = T0) -> None:
    for _ in range(3):
        adm = store.admit([p], now)
        store.settle(Settlement(p, adm, FAILURE, now, tokens=7))


def _limited(name: str = "a") -> Policy:
    return Policy(
        name,
        "openai",
        "gpt-4.1-nano",
        breaker=Breaker(failure_threshold=3),
        rpm=100,
        tpm=1000,
        max_concurrency=5,
    )


def test_every_key_is_namespaced_and_has_a_ttl(store: RedisState, redis_url: str) -> None:
    p = _limited()
    _exercise(store, p)
    store.admit([p], T0 + 40)  # keeps a lease and an rpm entry alive
    keys = store.keys()
    prefix = "{" + store.namespace + "}:"
    assert sorted(keys) == sorted(prefix + k + ":a|openai/gpt-4.1-nano" for k in "lrs")
    client = redis.Redis.from_url(redis_url)
    for key in keys:
        ttl = client.pttl(key)
        assert 0 < ttl <= (600 + 60) * 1000, (key, ttl)  # the longest: the 600 s lease
    client.close()


def test_state_stays_bounded(store: RedisState, redis_url: str) -> None:
    p = Policy("b", "mock", "m", breaker=Breaker(), rpm=50, tpm=10**9, max_concurrency=3)
    now = T0
    for i in range(600):
        now += 0.5
        adm = store.admit([p], now)
        if adm.index == 0:
            store.settle(Settlement(p, adm, SUCCESS if i % 3 else FAILURE, now, tokens=3))
    client = redis.Redis.from_url(redis_url)
    prefix = "{" + store.namespace + "}:"
    assert client.zcard(prefix + "r:b|mock/m") <= 50
    assert client.zcard(prefix + "l:b|mock/m") <= 3
    assert client.hlen(prefix + "s:b|mock/m") <= 6 + 3 * 10 + 2  # scalars, window, tpm ring
    assert len(client.hget(prefix + "s:b|mock/m", "tv") or b"") < 60 * 12
    client.close()


def test_clear_deletes_one_namespace_only(redis_url: str) -> None:
    a = RedisState(redis_url, namespace="ns-a")
    b = RedisState(redis_url, namespace="ns-b")
    c = RedisState(redis_url, namespace="ns-a:sub")  # a prefix-like name is still separate
    p = _limited()
    for s in (a, b, c):
        _exercise(s, p)
    assert a.keys() and b.keys() and c.keys()
    assert a.clear() == 2  # the state hash and the rpm log (no lease is held)
    assert a.keys() == []
    assert len(b.keys()) == 2 and len(c.keys()) == 2
    for s in (a, b, c):
        s.close()


def test_namespaces_never_interfere(redis_url: str) -> None:
    a = RedisState(redis_url, namespace="team-a")
    b = RedisState(redis_url, namespace="team-b")
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1), rpm=1)
    adm = a.admit([p], T0)
    a.settle(Settlement(p, adm, FAILURE, T0))
    assert a.admit([p], T0 + 1).index == -1
    assert b.admit([p], T0 + 1).index == 0  # its own breaker and its own rpm slot
    a.close()
    b.close()


def test_two_stores_with_one_namespace_share_state(redis_url: str) -> None:
    ns = fresh_namespace()
    a = RedisState(redis_url, namespace=ns)
    b = RedisState(redis_url, namespace=ns)
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=2, open_for=10))
    for s in (a, b):
        adm = s.admit([p], T0)
        s.settle(Settlement(p, adm, FAILURE, T0))
    skip = a.admit([p], T0 + 1)
    assert skip.index == -1 and skip.skips[0].retry_at == T0 + 10
    assert b.snapshot([p], T0 + 1)[0]["breaker"] == "open"
    a.close()
    b.close()


# -- Redis unavailable or slow -------------------------------------------------------------------
def test_redis_down_serves_locally_and_resumes(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="msgflux.gateway")
    ns = fresh_namespace()
    s = RedisState(redis_server.url, namespace=ns, timeout=0.05, retry_interval=0.05)
    other = RedisState(redis_server.url, namespace=ns)
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=2, open_for=10))
    held = s.admit([p], T0)
    assert isinstance(held.token, str)  # admitted by Redis
    redis_server.kill()
    slowest = 0.0
    for _ in range(200):
        t = time.perf_counter()
        adm = s.admit([p], T0)
        assert adm.index == 0
        s.settle(Settlement(p, adm, SUCCESS, T0))
        slowest = max(slowest, time.perf_counter() - t)
    s.settle(Settlement(p, held, FAILURE, T0))  # Redis admitted it, Redis is gone: counted locally
    assert slowest < 0.05 + 0.03
    info = s.info()
    assert info["healthy"] is False and info["serving"] == "local" and info["outages"] == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
    assert redis_server.url.split("//")[1].split("/")[0] in warnings[0].getMessage()

    redis_server.start()  # an empty Redis on the same port (no persistence)
    deadline = time.monotonic() + 5
    while not s.healthy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.healthy
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    for _ in range(2):
        adm = s.admit([p], T0 + 1)
        assert isinstance(adm.token, str)
        s.settle(Settlement(p, adm, FAILURE, T0 + 1))
    assert other.admit([p], T0 + 2).index == -1  # the other process sees it again
    s.close()
    other.close()


def test_redis_frozen_costs_at_most_the_timeout(redis_server: RedisServer) -> None:
    """A Redis that stops answering (SIGSTOP) costs one call at most ``timeout``."""
    s = RedisState(redis_server.url, namespace=fresh_namespace(), timeout=0.05)
    p = Policy("x", "mock", "m", breaker=Breaker())
    s.settle(Settlement(p, s.admit([p], T0), SUCCESS, T0))  # connected, scripts loaded
    assert redis_server.proc is not None
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        times = []
        for _ in range(50):
            t = time.perf_counter()
            adm = s.admit([p], T0)
            s.settle(Settlement(p, adm, SUCCESS, T0))
            times.append(time.perf_counter() - t)
        assert max(times) < 0.05 + 0.04
        # A timeout is verified (one PING from a thread) before the store goes local, so
        # the calls made during that check wait too; after it, none does.
        assert sum(t > 0.01 for t in times) <= 3
        assert not s.healthy and s.info()["timeouts"] >= 1
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    s.close()


def test_redis_never_reachable_from_the_start(caplog: pytest.LogCaptureFixture) -> None:
    from tests.redis_server import free_port

    s = RedisState(f"redis://127.0.0.1:{free_port()}/0", timeout=0.05)
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1))
    adm = s.admit([p], T0)
    s.settle(Settlement(p, adm, FAILURE, T0))
    assert s.admit([p], T0 + 1).index == -1  # the local breaker works meanwhile
    assert s.snapshot([p], T0 + 1)[0]["breaker"] == "open"
    assert s.info()["healthy"] is False
    s.close()


async def test_async_path_falls_back_and_resumes(redis_server: RedisServer) -> None:
    s = RedisState(redis_server.url, namespace=fresh_namespace(), retry_interval=0.05)
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1), max_concurrency=100)
    adm = await s.aadmit([p], T0)
    assert isinstance(adm.token, str) and adm.token
    await s.asettle(Settlement(p, adm, SUCCESS, T0))
    redis_server.kill()
    results = await asyncio.gather(*(s.aadmit([p], T0) for _ in range(50)))
    assert all(r.index == 0 for r in results)
    for r in results:
        await s.asettle(Settlement(p, r, IGNORED, T0))
    assert not s.healthy
    redis_server.start()
    for _ in range(500):
        if s.healthy:
            break
        await asyncio.sleep(0.01)
    assert s.healthy
    adm = await s.aadmit([p], T0)
    assert isinstance(adm.token, str) and adm.token
    await s.asettle(Settlement(p, adm, FAILURE, T0))
    assert (await s.aadmit([p], T0 + 1)).index == -1
    await s.aclose()
    s.close()


# -- configuration -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, error, field",
    [
        ({"url": 6379}, TypeError, "url"),
        ({"url": "http://127.0.0.1:6379"}, ValueError, "url"),
        ({"url": "redis://127.0.0.1:port/0"}, ValueError, "url"),
        ({"url": "unix://"}, ValueError, "url"),
        ({"namespace": ""}, ValueError, "namespace"),
        ({"namespace": "a{b}"}, ValueError, "namespace"),
        ({"namespace": 3}, TypeError, "namespace"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": "50ms"}, TypeError, "timeout"),
        ({"timeout": True}, TypeError, "timeout"),
        ({"retry_interval": -1}, ValueError, "retry_interval"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict[str, Any], error: type, field: str) -> None:
    args = {"url": "redis://127.0.0.1:6379/0", **kwargs}
    with pytest.raises(error, match=field):
        RedisState(**args)


@pytest.mark.parametrize("password", ["pa/ss#word", "a@b/c", "x#y?z", "%2Fencoded"])
def test_no_part_of_a_password_with_reserved_characters_shows(password: str) -> None:
    """Standard URL parsers split such a password and report part of it as host or fragment."""
    s = RedisState(f"redis://user:{password}@127.0.0.1:1/0", timeout=0.05)
    shown = repr(s) + str(s.info()) + s.url
    for part in {password, *password.replace("#", "/").replace("?", "/").split("/")} - {""}:
        if len(part) >= 4:
            assert part not in shown, part
    assert s.url == "redis://127.0.0.1:1/0"
    p = Policy("x", "mock", "m", breaker=Breaker())
    s.admit([p], T0)  # nothing listens: served locally, and the error text is scrubbed
    assert password not in str(s.info()["last_error"])
    s.close()


def test_a_password_with_a_slash_still_authenticates(redis_server: RedisServer) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    admin.execute_command("ACL", "SETUSER", "slashy", "on", ">pa/ss#wd", "~*", "&*", "+@all")
    s = RedisState(f"redis://slashy:pa/ss#wd@127.0.0.1:{redis_server.port}/0")
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1))
    s.settle(Settlement(p, s.admit([p], T0), FAILURE, T0))
    assert s.healthy and s.admit([p], T0 + 1).index == -1
    s.close()


def test_url_credentials_never_show() -> None:
    s = RedisState("redis://user:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.info())
    with pytest.raises(ValueError) as err:
        RedisState("http://user:s3cret@127.0.0.1:1/0")
    assert "s3cret" not in str(err.value)


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "msgflux.models.gateway.redis")
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r'pip install "msgflux-gateway\[redis\]"'):
        importlib.import_module("msgflux.models.gateway.redis")


# -- connections: URL options, threads, event loops, servers without functions -----------------
def test_password_db_and_unix_socket_from_the_url(tmp_path: Any) -> None:
    from tests.redis_server import running_redis

    sock = tmp_path / "r.sock"
    with running_redis(args=("--requirepass", "s3cret", "--unixsocket", str(sock))) as server:
        p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1))
        for url in (
            f"redis://:s3cret@127.0.0.1:{server.port}/3",
            f"unix://:s3cret@{sock}?db=3",
        ):
            s = RedisState(url, namespace=fresh_namespace())
            adm = s.admit([p], T0)
            s.settle(Settlement(p, adm, FAILURE, T0))
            assert s.admit([p], T0 + 1).index == -1 and s.healthy, s.info()
            s.close()
        client = redis.Redis(port=server.port, password="s3cret", db=3)
        assert len(client.keys("{test-*")) == 2  # both landed in db 3
        client.close()

        wrong = RedisState(f"redis://:wrong-pass-7f3a@127.0.0.1:{server.port}/0")
        assert wrong.admit([p], T0).index == 0  # served locally, never raised
        info = wrong.info()
        assert (
            not info["healthy"]
            and "wrong-pass-7f3a" not in str(info)
            and "wrong-pass-7f3a" not in repr(wrong)
        )
        wrong.close()


def test_falls_back_to_scripts_where_functions_are_not_allowed(redis_server: RedisServer) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    admin.execute_command("ACL", "SETUSER", "nofn", "on", ">pw", "~*", "&*", "+@all", "-fcall")
    admin.execute_command("ACL", "SETUSER", "nofn", "-function")
    s = RedisState(f"redis://nofn:pw@127.0.0.1:{redis_server.port}/0")
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1))
    adm = s.admit([p], T0)
    s.settle(Settlement(p, adm, FAILURE, T0))
    assert s.admit([p], T0 + 1).index == -1
    assert s.healthy and s.redis._functions is False
    from msgflux.models.gateway.redis.scripts import ADMIT as _ADMIT
    from msgflux.models.gateway.redis.scripts import SETTLE as _SETTLE

    shas = [hashlib.sha1(sc.source.encode()).hexdigest() for sc in (_ADMIT, _SETTLE)]
    assert admin.script_exists(*shas) == [True, True]  # it ran them as scripts
    assert admin.execute_command("FUNCTION", "LIST") == []  # and could not load functions
    s.close()
    admin.close()


def test_threads_share_one_store(store: RedisState) -> None:
    from concurrent.futures import ThreadPoolExecutor

    p = Policy("x", "mock", "m", breaker=Breaker(), rpm=50)

    def work(_: int) -> int:
        admitted = 0
        for _ in range(20):
            adm = store.admit([p], T0)
            if adm.index == 0:
                admitted += 1
                store.settle(Settlement(p, adm, SUCCESS, T0))
        return admitted

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(work, range(8))) == 50
    assert store.healthy


def test_one_store_many_event_loops(store: RedisState) -> None:
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=3))

    async def fail_once() -> None:
        adm = await store.aadmit([p], T0)
        await store.asettle(Settlement(p, adm, FAILURE, T0))

    for _ in range(3):  # each asyncio.run: a new loop, a new connection, closed at its end
        asyncio.run(fail_once())
    assert store.admit([p], T0 + 1).index == -1


async def test_concurrent_calls_of_one_loop_share_lua_calls(store: RedisState) -> None:
    """Operations started in the same loop iteration ride in one Lua call, applied in turn."""
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1, open_for=10), rpm=10)
    first = await store.aadmit([p], T0)  # opens the connection
    await store.asettle(Settlement(p, first, FAILURE, T0))
    admin = store._client()
    admin.config_resetstat()
    probes = await asyncio.gather(*(store.aadmit([p], T0 + 10) for _ in range(50)))
    assert sum(a.probe for a in probes) == 1  # exactly one half-open probe among 50
    assert sum(a.index == 0 for a in probes) == 1
    calls = admin.info("commandstats")
    lua_calls = sum(
        v["calls"] for k, v in calls.items() if k in ("cmdstat_fcall", "cmdstat_evalsha")
    )
    assert lua_calls < 10  # 50 admissions, a handful of round trips
    winner = next(a for a in probes if a.probe)
    await store.asettle(Settlement(p, winner, SUCCESS, T0 + 10))
    admitted = await asyncio.gather(*(store.aadmit([p], T0 + 11) for _ in range(50)))
    assert sum(a.index == 0 for a in admitted) == 8  # rpm=10: 2 slots were used before
    await asyncio.gather(
        *(store.asettle(Settlement(p, a, SUCCESS, T0 + 11)) for a in admitted if a.index == 0)
    )
    await store.aclose()


def test_the_store_shares_state_under_uvloop(redis_server: RedisServer) -> None:
    """uvloop's transports are not asyncio.Transport subclasses (msgflux serve runs on it)."""
    uvloop = pytest.importorskip("uvloop")
    s = RedisState(redis_server.url, namespace="uvloop-check")
    p = Policy("x", "mock", "m", breaker=Breaker(failure_threshold=1))

    async def main() -> None:
        adm = await s.aadmit([p], T0)
        await s.asettle(Settlement(p, adm, FAILURE, T0))
        assert (await s.aadmit([p], T0 + 1)).index == -1
        await s.aclose()

    uvloop.run(main())
    assert s.healthy and s.info()["local_admissions"] == 0
    assert s.state(p).state == 1  # open, in Redis
    s.close()
