"""Shared state on Redis (issue 6): what it costs per call, and what it costs in throughput.

1. Added latency: one gateway, two in-process deployments that answer at once, the same
   calls alternately through the in-memory store and through :class:`RedisState` on a
   loopback ``redis-server`` (blocks of calls interleaved, same run). Reported: p50 per call
   for each store and their difference, sync and async, for the default breaker and for a
   breaker plus rpm/tpm/max_concurrency limits (the heaviest scripts).
2. Throughput: 4 worker processes, each an async gateway (two OpenAI-protocol deployments on
   the local upstream, tests/upstream.py in its own process) at concurrency 32, all sharing
   one Redis namespace, vs the same 4 processes with in-memory state; once with an upstream
   that answers at once (CPU-bound: the worst case) and once with one answering in 20 ms.
   A warm-up round, then rounds alternating the order; the ratio is the median of the
   per-round ratios.

    .venv/bin/python -m bench.redis_state            # print
    .venv/bin/python -m bench.redis_state --write    # ... and update BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import redis
from tests.redis_server import running_redis

from bench.common import Instant, start_upstream, write_section
from msgflux.models.gateway import Breaker, ModelGateway, RedisState

SECTION = "## Shared state on Redis (issue 6)"
COMMAND = ".venv/bin/python -m bench.redis_state --write"

os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
logging.getLogger("msgflux").setLevel(logging.ERROR)


CONFIGS: dict[str, dict[str, Any]] = {
    "breaker": {},
    "breaker + rpm/tpm/max_concurrency": {"rpm": 10**7, "tpm": 10**12, "max_concurrency": 10**4},
}


def _gateway(state: Any, limits: dict[str, Any]) -> ModelGateway:
    return ModelGateway(
        [
            {"model_name": "primary", "model": Instant("primary"), **limits},
            {"model_name": "fallback", "model": Instant("fallback"), **limits},
        ],
        breaker=Breaker(),
        state=state,
    )


def _sync_block(gateway: ModelGateway, calls: int, out: list[float]) -> None:
    perf = time.perf_counter
    for _ in range(calls):
        t = perf()
        gateway(messages="hi")
        out.append(perf() - t)


async def _async_block(gateway: ModelGateway, calls: int, out: list[float]) -> None:
    perf = time.perf_counter
    for _ in range(calls):
        t = perf()
        await gateway.acall(messages="hi")
        out.append(perf() - t)


def latency(url: str, calls: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for name, limits in CONFIGS.items():
        store = RedisState(url, namespace=f"bench-latency-{os.getpid()}")
        store.clear()
        memory, shared = _gateway(None, limits), _gateway(store, limits)
        for mode in ("sync", "async"):
            times: dict[str, list[float]] = {"memory": [], "redis": []}
            loop = asyncio.new_event_loop()
            for r in range(rounds + 1):
                order = [("memory", memory), ("redis", shared)]
                for label, gw in order if r % 2 else order[::-1]:
                    sink: list[float] = [] if r == 0 else times[label]  # round 0 warms up
                    if mode == "sync":
                        _sync_block(gw, calls, sink)
                    else:
                        loop.run_until_complete(_async_block(gw, calls, sink))
            loop.run_until_complete(store.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            p50 = {k: statistics.median(v) for k, v in times.items()}
            p95 = {k: statistics.quantiles(v, n=20)[18] for k, v in times.items()}
            assert store.healthy, store.info()
            rows.append(
                {
                    "config": name,
                    "mode": mode,
                    "calls": len(times["redis"]),
                    "memory_p50": p50["memory"],
                    "redis_p50": p50["redis"],
                    "added_p50": p50["redis"] - p50["memory"],
                    "memory_p95": p95["memory"],
                    "redis_p95": p95["redis"],
                }
            )
        store.clear()
        store.close()
    return rows


# -- throughput ---------------------------------------------------------------------------------
def _worker(
    mode: str, url: str, namespace: str, base_url: str, calls: int, concurrency: int, at: float
) -> tuple[float, float, int, int]:
    from msgflux.models.model import Model

    async def main() -> tuple[float, float, int, int]:
        state = RedisState(url, namespace=namespace) if mode == "redis" else None
        gateway = ModelGateway(
            [
                {
                    "model_name": "primary",
                    "model": Model.chat_completion("openai/primary", base_url=base_url),
                },
                {
                    "model_name": "fallback",
                    "model": Model.chat_completion("openai/fallback", base_url=base_url),
                },
            ],
            state=state,
        )
        errors = 0

        async def lane(n: int) -> None:
            nonlocal errors
            for _ in range(n):
                try:
                    await gateway.acall(messages="hi")
                except Exception:
                    errors += 1

        await asyncio.gather(*(lane(4) for _ in range(concurrency)))  # warm-up
        await asyncio.sleep(max(0.0, at - time.time()))
        start = time.time()
        await asyncio.gather(*(lane(calls // concurrency) for _ in range(concurrency)))
        end = time.time()
        if state is not None:
            assert state.healthy, state.info()
            await state.aclose()
            state.close()
        return start, end, (calls // concurrency) * concurrency, errors

    return asyncio.run(main())


def _serve_delayed(delay: float, conn: Any) -> None:
    """An upstream process whose every answer takes ``delay`` seconds (a model's latency)."""
    from tests.upstream import Reply, Upstream

    upstream = Upstream(record=False).start()
    upstream.set_default(Reply(delay=delay))
    conn.send(upstream.base_url)
    conn.recv()  # until the parent says stop
    upstream.stop()


def throughput(
    url: str, base_url: str, procs: int, calls: int, concurrency: int, rounds: int
) -> dict[str, Any]:
    """Alternating memory/Redis runs of ``procs`` processes; round 0 only warms up."""
    ctx = multiprocessing.get_context("spawn")
    results: dict[str, list[float]] = {"memory": [], "redis": []}
    ratios = []
    with ProcessPoolExecutor(procs, mp_context=ctx) as pool:
        list(pool.map(time.sleep, [0.01] * procs))  # start the workers
        for r in range(rounds + 1):
            round_rates = {}
            for mode in ("memory", "redis") if r % 2 == 0 else ("redis", "memory"):
                namespace = f"bench-throughput-{os.getpid()}-{r}"
                at = time.time() + 1.0
                futures = [
                    pool.submit(_worker, mode, url, namespace, base_url, calls, concurrency, at)
                    for _ in range(procs)
                ]
                outs = [f.result() for f in futures]
                total = sum(o[2] for o in outs)
                errors = sum(o[3] for o in outs)
                assert errors == 0, f"{errors} calls failed"
                elapsed = max(o[1] for o in outs) - min(o[0] for o in outs)
                round_rates[mode] = total / elapsed
            if r == 0:
                continue
            for mode, rate in round_rates.items():
                results[mode].append(rate)
            ratios.append(round_rates["redis"] / round_rates["memory"])
    return {
        "memory": results["memory"],
        "redis": results["redis"],
        "ratios": ratios,
        "ratio": statistics.median(ratios),
        "procs": procs,
        "calls": calls,
        "concurrency": concurrency,
    }


# -- report -------------------------------------------------------------------------------------
def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _throughput_report(tp: dict[str, Any], title: str, note: str) -> list[str]:
    met = "met" if tp["ratio"] >= 0.8 else "NOT met"
    mem = ", ".join(f"{v:,.0f}" for v in tp["memory"])
    red = ", ".join(f"{v:,.0f}" for v in tp["redis"])
    rat = ", ".join(f"{v:.2f}" for v in tp["ratios"])
    return [
        "",
        f"**Throughput, {tp['procs']} processes, {title}.** Each process: an async gateway "
        f"over two OpenAI-protocol deployments on the local upstream (default breaker), "
        f"{tp['calls']} calls at concurrency {tp['concurrency']}; all processes start together; "
        "aggregate calls/s from the first start to the last finish. Redis mode: one namespace "
        f"shared by all four. {len(tp['ratios'])} measured rounds after a warm-up round, "
        "alternating which mode runs first.",
        "",
        "| state | aggregate calls/s (median round) | ratio Redis / memory (median of rounds) "
        "| target |",
        "|---|---|---|---|",
        f"| in-memory, per process | {statistics.median(tp['memory']):,.0f} | | |",
        f"| Redis, one namespace | {statistics.median(tp['redis']):,.0f} | "
        f"**{tp['ratio']:.2f}x** | >= 0.8x {met} |",
        "",
        f"Per round, calls/s: memory {mem}; Redis {red}; ratios {rat}. {note}",
    ]


def report(
    rows: list[dict[str, Any]], tp: dict[str, Any], slow: dict[str, Any], versions: str
) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` ({versions}; 2 CPUs shared by the client, redis-server and, for "
        "the throughput run, the upstream process).",
        "",
        "**Added latency per gateway call**, Redis store on loopback vs in-memory store, same "
        "gateway configuration and same run (blocks of calls interleaved, one warm-up round "
        "dropped). Two in-process deployments that answer at once, so the difference is the "
        "store: one Lua call before the attempt (admit) and one after (settle), as Redis 7 "
        "functions (`FCALL`). Target: <= 0.3 ms p50.",
        "",
        "| store config | path | calls | p50 memory | p50 Redis | **added p50** | p95 memory "
        "| p95 Redis | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        met = "met" if r["added_p50"] <= 0.0003 else "NOT met"
        lines.append(
            f"| {r['config']} | {r['mode']} | {r['calls']} | {us(r['memory_p50'])} | "
            f"{us(r['redis_p50'])} | **{us(r['added_p50'])}** | {us(r['memory_p95'])} | "
            f"{us(r['redis_p95'])} | <= 300 µs {met} |"
        )
    lines += _throughput_report(
        tp,
        "instant upstream (CPU-bound: the worst case for any per-call overhead)",
        "The upstream answers at once and runs on the same 2 cores as the 4 clients and "
        "redis-server, so every microsecond of CPU the Redis store adds per call shows up.",
    )
    lines += _throughput_report(
        slow,
        f"upstream answering in {slow['delay'] * 1000:.0f} ms (a fast model's latency)",
        "Here the clients wait on the model, as they do in production; the store's two "
        "round trips per call hide behind that wait.",
    )
    lines += [
        "",
        "How the CPU-bound figure was reached (same bench, same machine, during development): "
        "with redis-py's clients on the per-call path the added p50 was 210 µs sync / 372 µs "
        "async and the ratio 0.46x (redis.asyncio spends >100 µs of CPU per command); lean "
        "pipelined hiredis connections (`redis/pipe.py`) brought it to 0.75x; the Lua as a "
        "function library (no per-call rebuild of its helpers; Lua time per operation about "
        "10 -> 5 µs), "
        "per-slot window fields and merging the operations that one event loop starts in the "
        "same iteration into one Lua call brought it to 0.80x. What remains per call is about "
        "13 µs of client CPU and 13-15 µs of redis-server CPU (measured from /proc), on 2 "
        "cores that the upstream and the 4 clients share with Redis.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per latency block")
    parser.add_argument("--rounds", type=int, default=6, help="latency rounds")
    parser.add_argument("--tp-calls", type=int, default=3072, help="calls per process")
    parser.add_argument("--tp-rounds", type=int, default=7)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.02, help="slow upstream's latency (s)")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    versions = (
        f"Python {platform.python_version()}, redis-py {redis.__version__} with hiredis, "
        f"redis-server {_server_version()}"
    )
    upstream, base_url = start_upstream()
    try:
        with running_redis() as server:
            rows = latency(server.url, args.calls, args.rounds)
            for r in rows:
                print(
                    f"{r['config']:>36} {r['mode']:>5}: memory {us(r['memory_p50'])}, "
                    f"redis {us(r['redis_p50'])}, added {us(r['added_p50'])} (p50)"
                )
            tp = throughput(
                server.url, base_url, args.procs, args.tp_calls, args.concurrency, args.tp_rounds
            )
            print(
                f"throughput: memory {statistics.median(tp['memory']):,.0f}/s, "
                f"redis {statistics.median(tp['redis']):,.0f}/s, ratio {tp['ratio']:.2f}"
            )
            parent, child = multiprocessing.get_context("spawn").Pipe()
            server_proc = multiprocessing.get_context("spawn").Process(
                target=_serve_delayed, args=(args.delay, child)
            )
            server_proc.start()
            try:
                slow_url = parent.recv()
                slow = throughput(
                    server.url,
                    slow_url,
                    args.procs,
                    args.tp_calls // 4,
                    args.concurrency,
                    args.tp_rounds,
                )
            finally:
                parent.send("stop")
                server_proc.join(10)
            slow["delay"] = args.delay
            print(
                f"throughput with {args.delay * 1000:.0f} ms upstream: memory "
                f"{statistics.median(slow['memory']):,.0f}/s, redis "
                f"{statistics.median(slow['redis']):,.0f}/s, ratio {slow['ratio']:.2f}"
            )
    finally:
        upstream.kill()
        upstream.wait()
    text = report(rows, tp, slow, versions)
    print(text)
    if args.write:
        write_section(SECTION, text)


def _server_version() -> str:
    import subprocess

    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return out.split("v=")[1].split()[0] if "v=" in out else "?"


if __name__ == "__main__":
    main()
