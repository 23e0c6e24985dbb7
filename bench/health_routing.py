"""Health-aware routing benchmarks (issue 4), each against real local upstreams.

1. dead primary: once its breaker is open, how many requests reach the dead primary's port,
   and p50 latency vs a gateway whose only deployment is the healthy one (same run,
   interleaved calls).
2. hedging: two upstreams answering in 20 ms, each request stalling 2 s with probability 5%;
   p50/p95/p99 and extra upstream requests with and without ``Hedge(delay="p95")``.
3. overhead: gateway logic per sync/async call with breakers and stats on, two in-process
   deployments (bench/gateway.py's measurement).

The upstreams (tests/upstream.py) run in a child process, so they do not share the client's
GIL; the child reports how many requests each one received.

    .venv/bin/python -m bench.health_routing            # print
    .venv/bin/python -m bench.health_routing --write    # ... and update BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from tests.upstream import Reply, Upstream

from bench.common import write_section
from bench.gateway import overhead as gateway_overhead
from msgflux import Breaker, Hedge, ModelGateway
from msgflux.models.model import Model

SECTION = "## Health-aware routing (issue 4)"
COMMAND = ".venv/bin/python -m bench.health_routing --write"

os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
logging.getLogger("msgflux").setLevel(logging.ERROR)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def ms(v: float) -> str:
    return f"{v * 1000:.2f} ms"


def chat(base_url: str, model_id: str) -> Any:
    return Model.chat_completion(f"openai/{model_id}", base_url=base_url)


# -- upstreams in a child process ---------------------------------------------------------
def _serve(conn: Connection, specs: list[dict[str, Any]]) -> None:
    """Child process: one Upstream per spec, ``{"status": 503}`` (every reply) or
    ``{"script": (n, seed)}`` (see :func:`_script`). Replies are built here: a Reply does not
    survive pickling (its "unset" sentinels would lose their identity)."""
    servers = []
    for spec in specs:
        up = Upstream(record=False).start()
        if "status" in spec:
            up.set_default(Reply(status=spec["status"]))
        else:
            up.script(_script(*spec["script"]))
        servers.append(up)
    conn.send([up.base_url for up in servers])
    while True:
        if conn.recv() == "stop":
            break
        conn.send([up.count() for up in servers])
    for up in servers:
        up.stop()
    conn.send(None)


class Upstreams:
    """Upstreams served by a child process; ``counts()`` asks how many requests each got."""

    def __init__(self, specs: list[dict[str, Any]]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, specs), daemon=True)
        self._proc.start()
        self.urls: list[str] = self._conn.recv()

    def counts(self) -> list[int]:
        self._conn.send("count")
        counts: list[int] = self._conn.recv()
        return counts

    def close(self) -> None:
        self._conn.send("stop")
        self._conn.recv()
        self._proc.join(timeout=10)


# -- 1. dead primary ---------------------------------------------------------------------------
def dead_primary(calls: int) -> dict[str, Any]:
    ups = Upstreams([{"status": 503}, {"status": 200}])
    dead_url, healthy_url = ups.urls
    out: dict[str, Any] = {}
    try:
        for mode in ("sync", "async"):
            with_dead = ModelGateway(
                [
                    {"model_name": "primary", "model": chat(dead_url, "primary")},
                    {"model_name": "healthy", "model": chat(healthy_url, "healthy")},
                ],
                breaker=Breaker(),  # the defaults: 5 consecutive failures, open 30 s
            )
            only_healthy = ModelGateway(
                [{"model_name": "healthy", "model": chat(healthy_url, "h")}]
            )
            out[mode] = _dead_run(mode, calls, with_dead, only_healthy, lambda: ups.counts()[0])
            with_dead.close()
            only_healthy.close()
    finally:
        ups.close()
    return out


def _dead_run(
    mode: str,
    calls: int,
    with_dead: ModelGateway,
    only: ModelGateway,
    dead_count: Callable[[], int],
) -> dict[str, Any]:
    def timed_sync(gw: ModelGateway) -> float:
        t = time.perf_counter()
        gw(messages="hi")
        return time.perf_counter() - t

    async def timed_async(gw: ModelGateway) -> float:
        t = time.perf_counter()
        await gw.acall(messages="hi")
        return time.perf_counter() - t

    async def body() -> tuple[list[float], list[float], int, int]:
        async def one(gw: ModelGateway) -> float:
            return timed_sync(gw) if mode == "sync" else await timed_async(gw)

        start = dead_count()
        for _ in range(5):  # trip the breaker
            await one(with_dead)
        tripped = dead_count() - start
        assert with_dead.stats()["deployments"]["primary"]["breaker"] == "open"
        for _ in range(200):  # warm both pools
            await one(with_dead)
            await one(only)
        before = dead_count()
        a: list[float] = []
        b: list[float] = []
        for _ in range(calls):
            a.append(await one(with_dead))
            b.append(await one(only))
        return a, b, tripped, dead_count() - before

    a, b, tripped, leaked = asyncio.run(body())
    p50a, p50b = statistics.median(a), statistics.median(b)
    return {
        "requests_to_trip": tripped,
        "dead_requests_after_open": leaked,
        "p50_with_dead_primary": p50a,
        "p50_healthy_only": p50b,
        "ratio": p50a / p50b,
    }


# -- 2. hedging --------------------------------------------------------------------------------
STALL_P = 0.05
STALL_S = 2.0
FAST_S = 0.02


def _script(n: int, seed: int) -> list[Reply]:
    rng = random.Random(seed)
    return [Reply(delay=STALL_S if rng.random() < STALL_P else FAST_S) for _ in range(n)]


def hedging(calls: int, concurrency: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in ("async", "sync"):
        for label, hedge in (("unhedged", None), ("hedged_p95", Hedge(delay="p95"))):
            ups = Upstreams([{"script": (calls * 2, 1)}, {"script": (calls * 2, 2)}])
            try:
                gw = ModelGateway(
                    [
                        {"model_name": "a", "model": chat(ups.urls[0], "a")},
                        {"model_name": "b", "model": chat(ups.urls[1], "b")},
                    ],
                    hedge=hedge,
                )
                lat = _hedge_run(gw, mode, calls, concurrency)
                requests = sum(ups.counts())
                hedges_won = gw.stats()["deployments"]["b"]["hedges"]["won"]
                gw.close()
            finally:
                ups.close()
            out[f"{mode}/{label}"] = {
                "p50": pct(lat, 0.50),
                "p95": pct(lat, 0.95),
                "p99": pct(lat, 0.99),
                "max": max(lat),
                "upstream_requests": requests,
                "extra_requests": (requests - calls) / calls,
                "hedges_won": hedges_won,
            }
    return out


def _hedge_run(gw: ModelGateway, mode: str, calls: int, concurrency: int) -> list[float]:
    if mode == "async":

        async def main() -> list[float]:
            sem = asyncio.Semaphore(concurrency)

            async def one() -> float:
                async with sem:
                    t = time.perf_counter()
                    await gw.acall(messages="hi")
                    return time.perf_counter() - t

            return list(await asyncio.gather(*(one() for _ in range(calls))))

        return asyncio.run(main())

    def one_sync(_: int) -> float:
        t = time.perf_counter()
        gw(messages="hi")
        return time.perf_counter() - t

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one_sync, range(calls)))


# -- 3. overhead -------------------------------------------------------------------------------
def overhead(calls: int, rounds: int) -> dict[str, dict[str, float]]:
    return {
        "defaults (breakers + stats on)": gateway_overhead(calls, rounds),
        "breakers + stats, strategy=least_latency": gateway_overhead(
            calls, rounds, strategy="least_latency"
        ),
        "breaker=False (stats on)": gateway_overhead(calls, rounds, breaker=False),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--overhead-calls", type=int, default=20000)
    parser.add_argument("--only", default="dead,hedge,overhead")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    only = set(args.only.split(","))
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` (Python {'.'.join(map(str, sys.version_info[:3]))}, 2 shared "
        "cores; the upstreams, tests/upstream.py, run in a child process).",
    ]
    if "dead" in only:
        lines += [
            "",
            f"**Dead primary.** Primary answers 503 on its own port, fallback healthy; default "
            f"`Breaker()` (opens after 5 consecutive failures, open 30 s). After the breaker "
            f"opened, {args.calls} sequential calls through it, interleaved with {args.calls} "
            "calls through a gateway whose only deployment is the healthy one.",
            "",
            "| mode | requests that opened it | dead-port requests after open | p50 with dead "
            "primary | p50 healthy-only | ratio (target <= 1.1x) |",
            "|---|---|---|---|---|---|",
        ]
        for mode, r in dead_primary(args.calls).items():
            lines.append(
                f"| {mode} | {r['requests_to_trip']} | {r['dead_requests_after_open']} | "
                f"{ms(r['p50_with_dead_primary'])} | {ms(r['p50_healthy_only'])} | "
                f"{r['ratio']:.3f}x |"
            )
    if "hedge" in only:
        results = hedging(args.calls, args.concurrency)
        lines += [
            "",
            f"**Hedging.** Two upstreams answering in {FAST_S * 1000:.0f} ms, each request "
            f"stalling {STALL_S:.0f} s with probability {STALL_P:.0%} (seeded); {args.calls} "
            f'calls at concurrency {args.concurrency}; `Hedge(delay="p95")` vs no hedge.',
            "",
            "| mode | p50 | p95 | p99 | max | upstream requests | hedges won |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, r in results.items():
            lines.append(
                f"| {key} | {ms(r['p50'])} | {ms(r['p95'])} | {ms(r['p99'])} | {ms(r['max'])} | "
                f"{r['upstream_requests']} (+{r['extra_requests']:.1%}) | {r['hedges_won']} |"
            )
        lines.append("")
        for mode in ("async", "sync"):
            un, he = results[f"{mode}/unhedged"], results[f"{mode}/hedged_p95"]
            lines.append(
                f"- {mode}: hedged p99 / unhedged p99 = {he['p99'] / un['p99']:.3f} (target <= "
                f"0.2); extra upstream requests {he['extra_requests']:.1%} (target <= 10%)."
            )
        lines.append(
            "- The max stays ~2 s: the first `min_samples` (20) calls run unhedged while the "
            "p95 is unknown."
        )
    if "overhead" in only:
        lines += [
            "",
            "**Overhead.** Two in-process deployments answering at once: time per call through "
            "the gateway minus a direct call (bench/gateway.py's measurement, best of 5 rounds "
            f"of {args.overhead_calls} calls). Target: <= 30 µs per sync call with breakers and "
            "stats on.",
            "",
            "| configuration | sync | async |",
            "|---|---|---|",
        ]
        for label, r in overhead(args.overhead_calls, 5).items():
            lines.append(f"| {label} | {r['sync']:.1f} µs | {r['async']:.1f} µs |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
