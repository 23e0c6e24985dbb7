"""Worker processes for the multi-process Redis tests (started with multiprocessing "spawn").

Each worker builds its own gateway (two OpenAI-protocol deployments on the test upstream, a
:class:`RedisState` on the test's namespace) and runs phases in lock-step with the test
through a :class:`multiprocessing.Barrier`; it reports what it saw through a queue. The test
process owns the upstream, so the upstream's request counts are the ground truth for how many
requests reached each deployment.

All phases of a worker run in one event loop, after a warm-up burst on a deployment the
test does not count, so the measured phases reuse pooled connections (upstream and Redis)
as a long-running service would.
"""

from __future__ import annotations

import asyncio
import os
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

CONCURRENCY = 50


def _gateway(
    store: Any, base_url: str, first: dict[str, Any], second: str = "fallback", **options: Any
) -> Any:
    os.environ["OPENAI_API_KEY"] = "sk-test-openai-key"
    from msgflux.models.gateway import ModelGateway
    from msgflux.models.model import Model

    first = dict(first)
    first["model"] = Model.chat_completion(f"openai/{first.pop('model_id')}", base_url=base_url)
    fallback = Model.chat_completion(f"openai/{second}", base_url=base_url)
    return ModelGateway(
        [first, {"model_name": second, "model": fallback, "breaker": None}],
        state=store,
        **options,
    )


def _store(redis_url: str, namespace: str, timeout: float) -> Any:
    from msgflux.models.gateway import RedisState

    return RedisState(redis_url, namespace=namespace, timeout=timeout, retry_interval=0.05)


async def _burst(gateway: Any, n: int = CONCURRENCY) -> dict[str, Any]:
    """``n`` concurrent calls; who answered, what was skipped, what failed."""

    async def one() -> tuple[str, list[str | None]] | str:
        try:
            r = await gateway.acall(messages="hi")
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        meta = r.metadata["gateway"]
        return meta["model_name"], [h["skipped"] for h in meta["history"]]

    results = await asyncio.gather(*(one() for _ in range(n)))
    served: dict[str, int] = {}
    skips: dict[str, int] = {}
    errors = [r for r in results if isinstance(r, str)]
    for r in results:
        if isinstance(r, tuple):
            served[r[0]] = served.get(r[0], 0) + 1
            for reason in r[1]:
                if reason is not None:
                    skips[reason] = skips.get(reason, 0) + 1
    state = gateway.stats()["state"]
    return {
        "served": served,
        "skips": skips,
        "errors": errors,
        "ended": time.time(),
        "outages": state["outages"],
        "timeouts": state["timeouts"],
        "last_error": state["last_error"],
    }


def _run(
    rank: int,
    results: Any,
    barrier: Any,
    redis_url: str,
    namespace: str,
    base_url: str,
    timeout: float,
    body: Callable[[Any, Callable[[], Awaitable[None]]], Awaitable[None]],
) -> None:
    async def main() -> None:
        store = _store(redis_url, namespace, timeout)
        warm = _gateway(store, base_url, {"model_name": "warm", "model_id": "warm"}, "warm2")
        await _burst(warm)

        async def step() -> None:
            await asyncio.to_thread(barrier.wait)

        await body(store, step)
        await store.aclose()
        store.close()

    try:
        asyncio.run(main())
    except BaseException:
        results.put((rank, "crash", traceback.format_exc()))
        raise


def breaker_worker(
    rank: int,
    redis_url: str,
    namespace: str,
    base_url: str,
    timeout: float,
    barrier: Any,
    results: Any,
) -> None:
    """Phase 1: rank 0 alone sees a burst of failures. Phase 2: everyone calls before the
    reopen time. Phase 3: everyone calls at the reopen time (one probe in all)."""

    async def body(store: Any, step: Callable[[], Awaitable[None]]) -> None:
        from msgflux.models.gateway import Breaker

        breaker = Breaker(failure_threshold=5, failure_rate=None, open_for=3.0)
        first = {"model_name": "primary", "model_id": "primary"}
        gateway = _gateway(store, base_url, first, breaker=breaker)
        await step()
        if rank == 0:
            results.put((rank, "burst", await _burst(gateway)))
        await step()  # the test reads the upstream's count
        await step()
        reopens_at = gateway.stats()["deployments"]["primary"]["reopens_at"]
        results.put((rank, "open", {**await _burst(gateway), "reopens_at": reopens_at}))
        await step()
        await asyncio.sleep(max(0.0, reopens_at - time.time()) + 0.01)
        await step()
        results.put((rank, "probe", await _burst(gateway)))
        await step()

    _run(rank, results, barrier, redis_url, namespace, base_url, timeout, body)


def rpm_worker(
    rank: int,
    redis_url: str,
    namespace: str,
    base_url: str,
    timeout: float,
    barrier: Any,
    results: Any,
) -> None:
    """Two bursts of concurrent calls against a deployment limited to 60 requests a minute."""

    async def body(store: Any, step: Callable[[], Awaitable[None]]) -> None:
        first = {"model_name": "limited", "model_id": "limited", "rpm": 60}
        gateway = _gateway(store, base_url, first, breaker=None)
        for phase in ("first", "second"):
            await step()
            results.put((rank, phase, await _burst(gateway)))
        await step()

    _run(rank, results, barrier, redis_url, namespace, base_url, timeout, body)


def outage_worker(
    rank: int,
    redis_url: str,
    namespace: str,
    base_url: str,
    timeout: float,
    seconds: float,
    barrier: Any,
    results: Any,
) -> None:
    """Call continuously while the test kills and restarts Redis; then check sharing resumed."""

    async def body(store: Any, step: Callable[[], Awaitable[None]]) -> None:
        from msgflux.models.gateway import Breaker

        breaker = Breaker(failure_threshold=5, failure_rate=None, open_for=30)
        first = {"model_name": "primary", "model_id": "primary"}
        gateway = _gateway(store, base_url, first, breaker=breaker)
        await step()
        total, errors, unhealthy_seen = 0, [], False
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            out = await _burst(gateway, 10)
            total += sum(out["served"].values()) + len(out["errors"])
            errors += out["errors"]
            unhealthy_seen = unhealthy_seen or not store.healthy
        for _ in range(250):  # the watcher thread flips it back; give it up to 5 s
            if store.healthy:
                break
            await asyncio.sleep(0.02)
        report = {
            "total": total,
            "errors": errors,
            "unhealthy_seen": unhealthy_seen,
            "healthy_after": store.healthy,
        }
        results.put((rank, "steady", report))
        await step()  # the test makes "primary" fail now
        if rank == 0:
            results.put((rank, "trip", await _burst(gateway, 5)))
        await step()  # the test reads the upstream's count
        await step()
        results.put((rank, "after", await _burst(gateway, 20)))
        await step()

    _run(rank, results, barrier, redis_url, namespace, base_url, timeout, body)
