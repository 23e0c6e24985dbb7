"""The raw gateway path's own cost (issue 10): ``gateway.acomplete(body)`` against a bare
aiohttp POST of the same body, one call at a time, same upstream, same run.

    .venv/bin/python -m bench.raw_path            # print
    .venv/bin/python -m bench.raw_path --write    # ... and update BENCHMARKS.md

The gateway holds one ``openai_compatible`` deployment (breakers and stats on, as by
default). Its path: validate the OpenAI body into a canonical request, plan, admit, build the
wire body, POST through the transport, check the answer's shape, settle, and hand back the
canonical JSON with who answered. The bare path: ``session.post`` + ``orjson.loads``. Rounds
alternate the two; the figure is the difference of the per-round means (median of rounds,
and the best round). Targets: <= 15 us per call (issue 10), <= 25 us (issue 18).
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
from msgflux.models.request import from_openai

SECTION = "## Raw gateway path (issue 10)"
COMMAND = ".venv/bin/python -m bench.raw_path --write"
LAYERS = ("bare", "transport", "provider", "gateway")
"""What each row adds: the HTTP module, then the provider adapter, then the gateway."""
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
    model = Model.chat_completion("openai_compatible/m", base_url=base_url)
    raw = orjson.dumps(BODY)
    url = f"{base_url}/chat/completions"
    headers = {"Content-Type": "application/json"}
    endpoint = model._endpoint("/chat/completions")  # the model's own endpoint (its headers)
    request = from_openai("chat", BODY)
    results: dict[str, list[float]] = {name: [] for name in LAYERS}
    async with aiohttp.ClientSession() as session:

        async def bare() -> Any:
            async with session.post(url, data=raw, headers=headers) as resp:
                return orjson.loads(await resp.read())

        async def transport() -> Any:
            return orjson.loads((await _transport.apost(endpoint, raw)).content)

        async def provider() -> Any:
            return (await model.asend(request)).raw

        async def ours() -> Any:
            return (await gateway.acomplete(BODY)).body

        layers = list(zip(LAYERS, (bare, transport, provider, ours), strict=True))
        for _, fn in layers:
            await per_call(fn, 500)
        for i in range(rounds):
            for name, fn in layers if i % 2 == 0 else layers[::-1]:
                results[name].append(await per_call(fn, calls))
    await _transport.aclose()
    return results


def added(upper: list[float], lower: list[float]) -> float:
    """Median over rounds of the per-round difference, in microseconds."""
    return statistics.median((u - b) * 1e6 for u, b in zip(upper, lower, strict=True))


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
    median = added(ours, bare)
    best = min(ours) * 1e6 - min(bare) * 1e6
    verdict = "meets" if median <= 15 else "misses"
    rows = [
        f"| {label} | {statistics.median(results[name]) * 1e6:.1f} us | "
        + ("" if below is None else f"+{added(results[name], results[below]):.1f} us")
        + " |"
        for name, label, below in (
            ("bare", "bare aiohttp POST + orjson.loads", None),
            (
                "transport",
                "`_transport.apost` (our HTTP/1.1: bounded body and time, typed errors)",
                "bare",
            ),
            (
                "provider",
                "the provider's attempt (`model.asend(request)`: wire body, "
                "answer checked, msgflux view)",
                "transport",
            ),
            (
                "gateway",
                "`gateway.acomplete(body)` (validate, plan, admit, settle, stats)",
                "provider",
            ),
        )
    ]
    text = "\n".join(
        [
            SECTION,
            "",
            f"Command: `{COMMAND}` ({args.rounds} alternating rounds of {args.calls} sequential "
            "calls; upstream: tests/upstream.py in its own process; one worker of 2 cores).",
            "",
            "| path | per call (median of rounds) | added by this layer |",
            "|---|---|---|",
            *rows,
            f"| **overhead of the raw path over bare aiohttp** | **{median:.1f} us** "
            f"(best rounds: {best:.1f} us) | |",
            "",
            f"Target: <= 15 us per call: {verdict} it.",
        ]
    )
    print(text)
    if args.write:
        write_section(SECTION, text)


if __name__ == "__main__":
    main()
