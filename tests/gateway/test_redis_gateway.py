"""Gateways sharing state through a real ``redis-server``: in one process and across four.

The multi-process tests spawn 4 workers (``tests/redis_workers.py``) x 50 concurrent calls on
one namespace. The upstream runs in this process, so its request counts say exactly how many
requests reached each deployment, whichever process sent them.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from msgflux.exceptions import InternalServerError
from msgflux.models.gateway import Breaker, Hedge, MemoryStore, ModelGateway, RedisState
from tests import redis_workers
from tests.fakes import Scripted
from tests.redis_server import RedisServer
from tests.upstream import Reply, Upstream

pytestmark = pytest.mark.redis

PROCESSES = 4
TIMEOUT = 0.05


def _namespace() -> str:
    return f"gw-{os.getpid()}-{time.monotonic_ns()}"


# -- in one process ----------------------------------------------------------------------------
def test_state_url_builds_a_redis_store_and_stats_report_it(redis_url: str) -> None:
    primary = Scripted("primary", [InternalServerError("boom")] * 2)
    gateway = ModelGateway(
        [{"model_name": "primary", "model": primary}, {"model_name": "b", "model": Scripted("b")}],
        breaker=Breaker(failure_threshold=2, failure_rate=None, open_for=60),
        state=redis_url,
    )
    for _ in range(3):
        assert gateway(messages="hi").metadata["gateway"]["model_name"] == "b"
    assert len(primary.calls) == 2
    stats = gateway.stats()
    assert stats["state"]["backend"] == "redis"
    assert stats["state"]["shared"] is True and stats["state"]["healthy"] is True
    assert stats["deployments"]["primary"]["breaker"] == "open"
    gateway.close()


def test_gateways_with_one_namespace_share_a_breaker(redis_url: str) -> None:
    ns = _namespace()

    def build(model: Scripted) -> ModelGateway:
        return ModelGateway(
            [
                {"model_name": "primary", "model": model},
                {"model_name": "b", "model": Scripted("b")},
            ],
            breaker=Breaker(failure_threshold=3, failure_rate=None, open_for=60),
            state=RedisState(redis_url, namespace=ns),
        )

    first = Scripted("primary", [InternalServerError("down")] * 3)
    second = Scripted("primary")
    g1, g2 = build(first), build(second)
    for _ in range(3):
        g1(messages="hi")
    answer = g2(messages="hi")
    assert answer.metadata["gateway"]["model_name"] == "b"
    assert answer.metadata["gateway"]["history"][0]["skipped"] == "circuit open"
    assert second.calls == []

    other = ModelGateway(
        [{"model_name": "primary", "model": second}, {"model_name": "b", "model": Scripted("b")}],
        state=RedisState(redis_url, namespace=ns + "-other"),
    )
    assert other(messages="hi").metadata["gateway"]["model_name"] == "primary"


async def test_async_gateway_on_redis(redis_url: str) -> None:
    primary = Scripted("primary", [InternalServerError("boom")])
    store = RedisState(redis_url, namespace=_namespace())
    gateway = ModelGateway(
        [{"model_name": "primary", "model": primary}, {"model_name": "b", "model": Scripted("b")}],
        breaker=Breaker(failure_threshold=1, open_for=60),
        state=store,
    )
    assert (await gateway.acall(messages="hi")).metadata["gateway"]["model_name"] == "b"
    assert (await gateway.acall(messages="hi")).metadata["gateway"]["model_name"] == "b"
    assert len(primary.calls) == 1
    await store.aclose()
    store.close()


def test_memory_store_stays_the_default() -> None:
    gateway = ModelGateway([{"model_name": "a", "model": Scripted("a")}])
    assert gateway.stats()["state"]["backend"] == "memory"
    assert isinstance(ModelGateway([{"model_name": "a", "model": Scripted("a")}]), ModelGateway)
    assert MemoryStore().info()["shared"] is False


# -- four processes ----------------------------------------------------------------------------
class Workers:
    """4 spawned workers in lock-step with the test (a barrier of 5) and their reports."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.barrier = ctx.Barrier(PROCESSES + 1, timeout=20)
        self.results: Any = ctx.Queue()
        self.procs = [
            ctx.Process(target=target, args=(rank, *args, self.barrier, self.results))
            for rank in range(PROCESSES)
        ]
        for proc in self.procs:
            proc.start()

    def step(self) -> None:
        self.barrier.wait()

    def reports(self, kind: str, n: int = PROCESSES) -> list[dict[str, Any]]:
        out = []
        while len(out) < n:
            try:
                rank, got, data = self.results.get(timeout=60)
            except queue.Empty:
                pytest.fail(f"workers sent no {kind!r} report within 60 s")
            if got == "crash":
                pytest.fail(f"worker {rank} crashed:\n{data}")
            assert got == kind, (rank, got, data)
            out.append(data)
        return out

    def join(self) -> None:
        for proc in self.procs:
            proc.join(30)
            assert proc.exitcode == 0, proc.exitcode
        self.results.close()
        self.results.join_thread()


@pytest.fixture
def workers() -> Iterator[Callable[..., Workers]]:
    started: list[Workers] = []

    def start(target: Callable[..., None], *args: Any) -> Workers:
        w = Workers(target, *args)
        started.append(w)
        return w

    yield start
    for w in started:
        w.barrier.abort()
        for proc in w.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _served(reports: list[dict[str, Any]], name: str) -> int:
    return sum(r["served"].get(name, 0) for r in reports)


@pytest.mark.slow
def test_four_processes_share_one_breaker_and_one_probe(
    redis_url: str, upstream: Upstream, workers: Callable[..., Workers]
) -> None:
    upstream.set_default(Reply(status=500), model="primary")
    w = workers(redis_workers.breaker_worker, redis_url, _namespace(), upstream.base_url, TIMEOUT)
    w.step()  # everyone is ready; rank 0 sends its burst
    w.step()
    (burst,) = w.reports("burst", 1)
    assert burst["errors"] == [] and burst["served"] == {"fallback": 50}
    tripped = upstream.count(model="primary")
    assert 5 <= tripped <= 50  # the burst opened the breaker after at least 5 failures

    w.step()
    w.step()  # phase 2: 4 processes x 50 calls while the breaker is open
    reports = w.reports("open")
    seen = [(r["outages"], r["timeouts"], r["last_error"]) for r in [burst, *reports]]
    assert upstream.count(model="primary") == tripped, seen  # not one more request
    assert _served(reports, "fallback") == PROCESSES * 50
    assert all(r["errors"] == [] and r["skips"] == {"circuit open": 50} for r in reports)
    reopens_at = reports[0]["reopens_at"]
    assert all(r["reopens_at"] == reopens_at for r in reports)  # one shared view
    assert all(r["ended"] < reopens_at for r in reports)  # all of it before the probe time

    w.step()  # everyone slept until the reopen time
    w.step()  # phase 3: 4 x 50 calls race for the half-open probe
    reports = w.reports("probe")
    assert upstream.count(model="primary") == tripped + 1  # exactly one probe in all
    assert all(r["errors"] == [] for r in reports)
    assert _served(reports, "fallback") == PROCESSES * 50
    w.join()


@pytest.mark.slow
def test_rpm_is_one_limit_for_four_processes(
    redis_url: str, upstream: Upstream, workers: Callable[..., Workers]
) -> None:
    w = workers(redis_workers.rpm_worker, redis_url, _namespace(), upstream.base_url, TIMEOUT)
    started = time.monotonic()
    w.step()
    first = w.reports("first")
    w.step()
    second = w.reports("second")
    w.step()
    w.join()
    assert time.monotonic() - started < 60  # all of it inside one minute
    assert upstream.count(model="limited") == 60  # no over- and no under-admission
    assert _served(first, "limited") == 60 and _served(second, "limited") == 0
    assert _served(first + second, "fallback") == 2 * PROCESSES * 50 - 60
    assert all(r["errors"] == [] for r in first + second)
    assert sum(r["skips"].get("rpm limit", 0) for r in first + second) == 2 * 200 - 60


@pytest.mark.slow
def test_redis_killed_mid_run_fails_no_call_and_sharing_resumes(
    redis_server: RedisServer, upstream: Upstream, workers: Callable[..., Workers]
) -> None:
    seconds = 2.0
    w = workers(
        redis_workers.outage_worker,
        redis_server.url,
        _namespace(),
        upstream.base_url,
        0.05,
        seconds,
    )

    def outage() -> None:
        time.sleep(seconds * 0.25)
        redis_server.kill()
        time.sleep(seconds * 0.3)
        redis_server.start()

    chaos = threading.Thread(target=outage)
    w.step()
    chaos.start()
    reports = w.reports("steady")
    chaos.join()
    assert all(r["errors"] == [] for r in reports), [r["errors"][:3] for r in reports]
    assert sum(r["total"] for r in reports) > 100
    assert all(r["unhealthy_seen"] for r in reports)  # they did notice the outage
    assert all(r["healthy_after"] for r in reports)  # and came back

    upstream.set_default(Reply(status=500), model="primary")
    before = upstream.count(model="primary")
    w.step()  # rank 0 trips the breaker on the restarted (empty) Redis
    w.step()
    (trip,) = w.reports("trip", 1)
    assert trip["errors"] == [] and upstream.count(model="primary") == before + 5, trip
    w.step()
    w.step()
    after = w.reports("after")  # every process sees the shared breaker open again
    assert upstream.count(model="primary") == before + 5, [
        (r["outages"], r["timeouts"], r["last_error"], r["skips"]) for r in after
    ]
    assert all(r["skips"] == {"circuit open": 20} for r in after)
    w.join()


# -- every admission is settled, even when the caller cancels mid-race -------------------------
class _Sleepy(Scripted):
    """Answers after ``delay`` seconds on the async path (cancellable)."""

    async def acall(self, **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay)
        return self._answer(self._next(kwargs), kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "memory"])
async def test_leases_return_to_zero_after_1000_cancelled_hedged_calls(
    redis_url: str, backend: str
) -> None:
    # A generous store timeout: this test is about cancellation, and under a loaded machine an
    # admission that outlives the default 50 ms would be served locally (its Redis lease then
    # waits for its expiry instead of a settlement, which is a different test).
    store: Any = (
        RedisState(redis_url, namespace=_namespace(), timeout=2.0)
        if backend == "redis"
        else MemoryStore()
    )
    a, b = _Sleepy("a", delay=5.0), _Sleepy("b", delay=5.0)
    gateway = ModelGateway(
        [
            {"model_name": "a", "model": a, "max_concurrency": 2000},
            {"model_name": "b", "model": b, "max_concurrency": 2000},
        ],
        hedge=Hedge(delay=0.002),
        state=store,
    )

    async def cancelled_call() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(gateway.acall(messages="hi"), 0.03)

    for _ in range(10):
        await asyncio.gather(*(cancelled_call() for _ in range(100)))

    def leases() -> list[int]:
        deployments = gateway.stats()["deployments"]
        return [deployments[name]["leases"] for name in ("a", "b")]

    for _ in range(250):  # settlements of cancelled admissions finish in the background
        if leases() == [0, 0]:
            break
        await asyncio.sleep(0.02)
    assert leases() == [0, 0]
    stats = gateway.stats()["deployments"]
    assert stats["a"]["in_flight"] == 0 and stats["b"]["in_flight"] == 0
    # Cancellation hit calls while admitted by the store and while racing (a hedge started).
    assert 0 < stats["a"]["calls"] <= 1000 and stats["b"]["hedges"]["started"] > 0
    if backend == "redis":
        await store.aclose()
        store.close()
