"""Gateway figures for BENCHMARKS.md (issue 3): logic overhead and failover latency.

    .venv/bin/python -m bench.gateway            # print
    .venv/bin/python -m bench.gateway --write    # ... and update BENCHMARKS.md

* overhead: two in-process deployments that answer at once; time per call through
  ModelGateway minus time per direct call of the same model (best of several rounds).
  Targets: <= 20 us per sync call, <= 30 us per async call. Measured with the defaults
  (breakers and stats on) and with ``breaker=False``.
* failover: primary on a closed port (connection refused), fallback healthy on the local
  upstream (separate process); breakers off, so every call pays the failed attempt.
  Target: p50 <= healthy-only p50 + 1.5 ms, same run, sync and async.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import Instant, percentile, start_upstream, write_section
from msgflux import Model, ModelGateway, _transport

SECTION = "## Gateway (issue 3)"
COMMAND = ".venv/bin/python -m bench.gateway --write"


def per_call(fn: Callable[..., Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn(messages="hi")
    return (time.perf_counter() - start) / calls


async def aper_call(fn: Callable[..., Any], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        await fn(messages="hi")
    return (time.perf_counter() - start) / calls


def overhead(calls: int, rounds: int, **options: Any) -> dict[str, float]:
    primary = Instant("primary")
    gateway = ModelGateway(
        [
            {"model_name": "primary", "model": primary},
            {"model_name": "fallback", "model": Instant("fallback")},
        ],
        **options,
    )
    loop = asyncio.new_event_loop()
    try:
        direct = min(per_call(primary._call_once, calls) for _ in range(rounds))
        through = min(per_call(gateway, calls) for _ in range(rounds))
        adirect = min(
            loop.run_until_complete(aper_call(primary._acall_once, calls)) for _ in range(rounds)
        )
        athrough = min(
            loop.run_until_complete(aper_call(gateway.acall, calls)) for _ in range(rounds)
        )
    finally:
        loop.close()
    return {"sync": (through - direct) * 1e6, "async": (athrough - adirect) * 1e6}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def latencies(fn: Callable[[], Any], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return out


async def alatencies(fn: Callable[[], Any], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        began = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - began)
    return out


def failover(base_url: str, calls: int, rounds: int) -> dict[str, dict[str, float]]:
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")

    def chat(model_id: str, url: str) -> Any:
        return Model.chat_completion(f"openai/{model_id}", base_url=url)

    healthy = ModelGateway(
        [{"model_name": "healthy", "model": chat("healthy", base_url)}], breaker=False
    )
    failing = ModelGateway(
        [
            {"model_name": "dead", "model": chat("dead", closed_port_url())},
            {"model_name": "healthy", "model": chat("healthy", base_url)},
        ],
        breaker=False,
    )
    assert failing(messages="hi").metadata.gateway["fallbacks"] == ["dead"]
    out: dict[str, dict[str, float]] = {}
    samples: dict[str, list[float]] = {"sync healthy": [], "sync failover": []}
    for _ in range(rounds):
        samples["sync healthy"] += latencies(lambda: healthy(messages="hi"), calls)
        samples["sync failover"] += latencies(lambda: failing(messages="hi"), calls)

    async def arun() -> None:
        samples["async healthy"] = []
        samples["async failover"] = []
        for _ in range(rounds):
            samples["async healthy"] += await alatencies(
                lambda: healthy.acall(messages="hi"), calls
            )
            samples["async failover"] += await alatencies(
                lambda: failing.acall(messages="hi"), calls
            )
        await _transport.aclose()

    asyncio.run(arun())
    for name, values in samples.items():
        out[name] = {"p50": percentile(values, 50) * 1e3, "p95": percentile(values, 95) * 1e3}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--failover-calls", type=int, default=300)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    on = overhead(args.calls, args.rounds)
    off = overhead(args.calls, args.rounds, breaker=False)
    proc, base_url = start_upstream()
    try:
        fo = failover(base_url, args.failover_calls, 3)
    finally:
        proc.kill()
        proc.wait()
    lines = [
        SECTION,
        "",
        f"Command: `{COMMAND}` (Python {'.'.join(map(str, sys.version_info[:3]))}, "
        "2 shared cores; the upstream runs in its own process).",
        "",
        "| measurement | figure | target |",
        "|---|---|---|",
        f"| overhead per sync call, defaults | {on['sync']:.1f} µs | <= 20 µs |",
        f"| overhead per async call, defaults | {on['async']:.1f} µs | <= 30 µs |",
        f"| overhead per sync call, `breaker=False` | {off['sync']:.1f} µs | <= 20 µs |",
        f"| overhead per async call, `breaker=False` | {off['async']:.1f} µs | <= 30 µs |",
    ]
    for mode in ("sync", "async"):
        h, f = fo[f"{mode} healthy"], fo[f"{mode} failover"]
        added = f["p50"] - h["p50"]
        verdict = "met" if added <= 1.5 else "MISSED"
        lines.append(
            f"| {mode} failover from a refused port: p50 {f['p50']:.2f} ms vs healthy-only "
            f"{h['p50']:.2f} ms (p95 {f['p95']:.2f} vs {h['p95']:.2f}) | +{added:.2f} ms | "
            f"<= +1.5 ms {verdict} |"
        )
    lines += [
        "",
        "Overhead: two in-process deployments answering at once ('defaults' = breakers and "
        "stats on), time through the gateway minus "
        f"a direct call, best of {args.rounds} rounds of {args.calls} calls. Failover: "
        f"{3 * args.failover_calls} sequential calls per row, breakers off so every call first "
        "hits the refused port. LiteLLM's Router, for comparison, was measured at about 2,000 µs "
        "overhead and about 21 ms failover on this kind of machine.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
