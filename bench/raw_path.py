"""The raw gateway path's own cost (issue 10): ``gateway.acomplete(body)`` against a bare
aiohttp POST of the same body, one call at a time, same upstream, same run.

    .venv/bin/python -m bench.raw_path            # print
    .venv/bin/python -m bench.raw_path --write    # ... and update BENCHMARKS.md

The gateway holds one ``openai_compatible`` deployment (breakers and stats on, as by
default). Its path: validate the OpenAI body into a canonical request, plan, admit, build the
wire body, POST through the transport, check the answer's shape, settle, and hand back the
canonical JSON with who answered. The bare path: ``session.post`` + ``orjson.loads``. Rounds
alternate the two; the figure is the difference of the per-round means (median of rounds,
and the best round). Target: <= 15 us per call.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from bench.common import start_upstream, write_section
from msgflux import Model, ModelGateway, _transport

SECTION = "## Raw gateway path (issue 10)"
COMMAND = ".venv/bin/python -m bench.raw_path --write"
BODY = {"model": "m", "messages": [{"role": "user", "content": "Who was Frank Rosenblatt?"}]}


async def per_call(fn: Callable[[], Awaitable[Any]], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await fn()
    return (time.perf_counter() - started) / calls


async def measure(base_url: str, calls: int, rounds: int) -> dict[str, list[float]]:
    gateway = ModelGateway(
        [
            {
                "model_name": "up",
                "model": Model.chat_completion("openai_compatible/m", base_url=base_url),
            },
            {
                "model_name": "spare",
                "model": Model.chat_completion("openai_compatible/m", base_url=base_url),
            },
        ]
    )
    raw = orjson.dumps(BODY)
    url = f"{base_url}/chat/completions"
    headers = {"Content-Type": "application/json"}
    results: dict[str, list[float]] = {"bare": [], "gateway": []}
    async with aiohttp.ClientSession() as session:

        async def bare() -> Any:
            async with session.post(url, data=raw, headers=headers) as resp:
                return orjson.loads(await resp.read())

        async def ours() -> Any:
            return (await gateway.acomplete(BODY)).body

        await per_call(bare, 500)
        await per_call(ours, 500)
        for i in range(rounds):
            order = [("bare", bare), ("gateway", ours)]
            for name, fn in order if i % 2 == 0 else order[::-1]:
                results[name].append(await per_call(fn, calls))
    await _transport.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    proc, base_url = start_upstream()
    try:
        results = asyncio.run(measure(base_url, args.calls, args.rounds))
    finally:
        proc.terminate()
        proc.wait()
    bare, ours = results["bare"], results["gateway"]
    diffs = [(g - b) * 1e6 for g, b in zip(ours, bare, strict=True)]
    median = statistics.median(diffs)
    best = min(ours) * 1e6 - min(bare) * 1e6
    verdict = "meets" if median <= 15 else "misses"
    text = "\n".join(
        [
            SECTION,
            "",
            f"Command: `{COMMAND}` ({args.rounds} alternating rounds of {args.calls} sequential "
            "calls; upstream: tests/upstream.py in its own process; one worker of 2 cores).",
            "",
            "| path | per call (median of rounds) |",
            "|---|---|",
            f"| bare aiohttp POST + orjson.loads | {statistics.median(bare) * 1e6:.1f} us |",
            f"| `gateway.acomplete(body)` | {statistics.median(ours) * 1e6:.1f} us |",
            f"| **overhead** | **{median:.1f} us** (best rounds: {best:.1f} us) |",
            "",
            f"Target: <= 15 us per call: {verdict} it.",
        ]
    )
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
